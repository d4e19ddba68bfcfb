"""podnet-portmap chained after podnet-bridge, proven by traffic.

Topology: the sandbox is the node, with a bridge for pods and an uplink veth to a
`client` netns (192.168.77.0/24 and 192.168.78.0/24 on the same wire); pod servers
answer with a banner, so each fetch proves which pod it reached.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import netns_add, netns_del, nsexec, run_chain, run_plugin, unique
from tests.helpers.traffic import fetch, server

HOST_A, HOST_B = "192.168.77.1", "192.168.78.1"


@pytest.fixture
def client(sandbox: str) -> Iterator[str]:
    ns = unique("pnt-c-")
    netns_add(ns)
    try:
        nsexec(sandbox, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "cl0", "netns", ns)
        for ip in (f"{HOST_A}/24", f"{HOST_B}/24"):
            nsexec(sandbox, "ip", "addr", "add", ip, "dev", "uplink0")
        nsexec(sandbox, "ip", "link", "set", "uplink0", "up")
        for ip in ("192.168.77.2/24", "192.168.78.2/24"):
            nsexec(ns, "ip", "addr", "add", ip, "dev", "cl0")
        nsexec(ns, "ip", "link", "set", "cl0", "up")
        nsexec(ns, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        netns_del(ns)


def chain(tmp_path: Path, mode: dict[str, str], **portmap: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kpm", "plugins": [
        {"type": "podnet-bridge", "bridge": "pnbr5", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "podnet-host-local", "subnet": "10.82.0.0/24", "dataDir": str(tmp_path / "ipam"),
                  "routes": [{"dst": "0.0.0.0/0"}]}, **mode},
        {"type": "podnet-portmap", "capabilities": {"portMappings": True}, **mode, **portmap},
    ]}


MAPPINGS = {"portMappings": [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"HostPort": 5353, "ContainerPort": 53, "Protocol": "UDP"},        # containerd's spelling
    {"hostPort": 9090, "containerPort": 80, "protocol": "tcp", "hostIP": HOST_A},
]}


def portmap_table(sandbox: str) -> str:
    return nsexec(sandbox, "nft", "list", "table", "inet", "podnet_portmap", check=False).stdout


def test_host_port_reached_from_outside_hairpin_localhost_and_udp(bin_dir: str, sandbox: str, client: str,
                                                                  make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod1, pod2 = make_pod(), make_pod()
    r1 = run_chain(bin_dir, conf, "ADD", netns=pod1, sandbox=sandbox, runtime_config=MAPPINGS)
    assert r1.rc == 0, r1.stdout + r1.stderr
    r2 = run_chain(bin_dir, conf, "ADD", netns=pod2, sandbox=sandbox, container_id="c2")
    assert r2.rc == 0, r2.stdout
    assert r1.out["ips"][0]["address"].startswith("10.82.0.")  # prevResult passed through
    p1 = os.path.basename(pod1)
    with server(p1, "tcp", 80, "pod1-tcp"), server(p1, "udp", 53, "pod1-udp"):
        assert fetch(client, "tcp", HOST_A, 8080).startswith("pod1-tcp"), "not reachable from outside"
        assert fetch(client, "tcp", HOST_B, 8080).startswith("pod1-tcp"), "any-address mapping missing on B"
        assert fetch(os.path.basename(pod2), "tcp", HOST_A, 8080).startswith("pod1-tcp"), "second pod (hairpin)"
        assert fetch(p1, "tcp", HOST_A, 8080).startswith("pod1-tcp"), "pod to its own host port (hairpin)"
        assert fetch(sandbox, "tcp", "127.0.0.1", 8080).startswith("pod1-tcp"), "localhost on the node"
        assert fetch(client, "udp", HOST_A, 5353).startswith("pod1-udp"), "UDP mapping"
        assert fetch(client, "tcp", HOST_A, 9090).startswith("pod1-tcp"), "hostIP-bound mapping"
        assert fetch(client, "tcp", HOST_B, 9090, timeout=1).startswith("ERROR"), "hostIP mapping leaks to B"
        chk = run_chain(bin_dir, conf, "CHECK", netns=pod1, sandbox=sandbox, runtime_config=MAPPINGS, prev=r1.out)
        assert chk.rc == 0, chk.stdout
        d = run_chain(bin_dir, conf, "DEL", netns=pod1, sandbox=sandbox, runtime_config=MAPPINGS, prev=r1.out)
        assert d.rc == 0, d.stdout
        assert '"kpm c1"' not in portmap_table(sandbox)
        assert fetch(client, "tcp", HOST_A, 8080, timeout=1).startswith("ERROR")
    assert run_chain(bin_dir, conf, "DEL", netns=pod1, sandbox=sandbox, runtime_config=MAPPINGS).rc == 0
    assert run_chain(bin_dir, conf, "DEL", netns=pod2, sandbox=sandbox, container_id="c2").rc == 0


def test_check_notices_a_removed_mapping_and_gc_removes_stale(bin_dir: str, sandbox: str, make_pod, mode,
                                                              tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config=MAPPINGS)
    assert r.rc == 0, r.stdout
    nsexec(sandbox, "nft", "delete", "element", "inet", "podnet_portmap", "any4", "{ tcp . 8080 }")
    chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, runtime_config=MAPPINGS, prev=r.out)
    assert chk.rc != 0 and "8080" in chk.out["msg"]
    gc = dict(conf["plugins"][1], cniVersion="1.1.0", name="kpm", **{"cni.dev/valid-attachments": []})
    g = run_plugin(f"{bin_dir}/podnet-portmap", "GC", gc, sandbox=sandbox)
    assert g.rc == 0, g.stdout
    assert '"kpm c1"' not in portmap_table(sandbox)
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, runtime_config=MAPPINGS).rc == 0


def test_two_pods_cannot_take_one_host_port(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod1, pod2 = make_pod(), make_pod()
    one = {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    first = run_chain(bin_dir, conf, "ADD", netns=pod1, sandbox=sandbox, runtime_config=one)
    assert first.rc == 0
    pm_conf = dict(conf["plugins"][1], cniVersion="1.0.0", name="kpm", runtimeConfig=one, prevResult=first.out)
    again = run_plugin(f"{bin_dir}/podnet-portmap", "ADD", pm_conf, netns=pod1, sandbox=sandbox)
    assert again.rc == 0, "a repeated portmap ADD of the same pod must succeed: " + again.stdout
    r = run_chain(bin_dir, conf, "ADD", netns=pod2, sandbox=sandbox, container_id="c2", runtime_config=one)
    assert r.rc != 0 and "8080" in r.out["msg"] and "c1" in r.out["msg"]
    assert '"kpm c2"' not in portmap_table(sandbox)
    for cid, pod in (("c1", pod1), ("c2", pod2)):
        assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, container_id=cid,
                         runtime_config=one).rc == 0


@pytest.mark.parametrize("mappings,field", [
    ([{"hostPort": 70000, "containerPort": 80}], "hostPort"),
    ([{"hostPort": 8080, "containerPort": 0}], "containerPort"),
    ([{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}], "protocol"),
    ([{"hostPort": 8080, "containerPort": 80, "hostIP": "1.2.3.4 } ; flush ruleset ; {"}], "hostIP"),
    ({"hostPort": 8080}, "portMappings"),
    ([{"hostPort": "8080", "containerPort": 80}], "hostPort"),
])
def test_bad_mappings_are_code_7_and_apply_nothing(mappings: Any, field: str, bin_dir: str, sandbox: str, make_pod,
                                                   mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config={"portMappings": mappings})
    assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], r.stdout
    assert '"kpm c1"' not in portmap_table(sandbox)
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


def test_raw_conditions_are_refused(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, conditionsV4=["ip saddr 1.2.3.4"])
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config=MAPPINGS)
    assert r.rc != 0 and r.out["code"] == 7 and "conditionsV4" in r.out["msg"]
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


@pytest.mark.parametrize("builder,types", [
    ("kubernetes_conflist", ["podnet"]),
    ("kubernetes_chain_conflist", ["podnet-bridge", "podnet-portmap", "podnet-bandwidth", "podnet-tuning"]),
])
def test_generated_kubernetes_conflist_end_to_end(builder: str, types: list[str], bin_dir: str, sandbox: str,
                                                  client: str, make_pod, tmp_path: Path) -> None:
    """`podnet install --kubernetes` (one exec) and `--kubernetes-chain` (four plugins) write
    conflists a runtime can run as they are."""
    from podnet import conflists
    conf = getattr(conflists, builder)("kk8s", ["10.92.0.0/24"], bridge="pnbr9",
                                       agent_socket=str(tmp_path / "none.sock"), data_dir=str(tmp_path / "ipam"))
    assert [p["type"] for p in conf["plugins"]] == types
    rc = {"portMappings": [{"hostPort": 8181, "containerPort": 80, "protocol": "tcp"}],
          "bandwidth": {"ingressRate": 50_000_000, "ingressBurst": 1_000_000,
                        "egressRate": 50_000_000, "egressBurst": 1_000_000}}
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config=rc)
    assert r.rc == 0, r.stdout + r.stderr
    assert any(i["name"].startswith("bwp") for i in r.out["interfaces"])
    with server(os.path.basename(pod), "tcp", 80, "k8s-pod"):
        assert fetch(client, "tcp", HOST_A, 8181).startswith("k8s-pod")
    assert run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, runtime_config=rc, prev=r.out).rc == 0
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, runtime_config=rc, prev=r.out).rc == 0
    assert '"kk8s ' not in portmap_table(sandbox)
