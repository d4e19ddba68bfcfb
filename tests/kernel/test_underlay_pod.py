"""The underlay pod (issue 30): the one-exec `podnet` plugin in macvlan mode — eth0 a macvlan child
of the node's uplink with an address of the datacenter subnet, plus the leg to its own node.
Checked by traffic: the node ↔ the pod (a macvlan child cannot reach its parent: only the leg
makes this work), a Service (a DNAT in the node, as kube-proxy's) whose backend is another pod on
the same node — the answer must come back through the leg, and the backend sees the client's own
address —, a hostPort from the datacenter, the datacenter ↔ the pod directly, and nothing left
after DEL.  In-process and through the agent (the `mode` fixture)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import nsexec, run_chain
from tests.helpers.traffic import fetch, server
from tests.helpers.underlay import UNDERLAY_PEER

NODE = "10.79.0.1"
SERVICE_IP, SERVICE_CIDR = "10.96.7.7", "10.96.0.0/16"


@pytest.fixture
def node(sandbox: str, underlay: str) -> tuple[str, str]:
    """(the node's netns, the datacenter host's): the node's address on its uplink."""
    nsexec(sandbox, "ip", "addr", "add", f"{NODE}/24", "dev", "umaster")
    nsexec(sandbox, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return sandbox, underlay


def conflist(tmp_path: Path, mode: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kund", "plugins": [{
        "type": "podnet", "mode": "macvlan", "master": "umaster", "macvlanMode": "bridge", **mode,
        "ipam": {"type": "podnet-host-local", "ranges": [[{"subnet": "10.79.0.0/24", "rangeStart": "10.79.0.10",
                                                           "rangeEnd": "10.79.0.200", "gateway": UNDERLAY_PEER}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")},
        "leg": {"routes": [SERVICE_CIDR]}, "portmap": {"snat": True},
        "capabilities": {"portMappings": True}, **extra}]}


def links(ns: str) -> list[dict[str, Any]]:
    return list(json.loads(nsexec(ns, "ip", "-j", "-d", "link", "show").stdout))


def test_underlay_pod_reaches_node_service_datacenter_and_leaves_nothing(
        bin_dir: str, node: tuple[str, str], make_pod, mode, tmp_path: Path) -> None:
    host, dc = node
    conf = conflist(tmp_path, mode)
    client, backend = make_pod(), make_pod()
    rc = {"portMappings": [{"hostPort": 18099, "containerPort": 8080, "protocol": "tcp"}]}
    a = run_chain(bin_dir, conf, "ADD", netns=client, sandbox=host, container_id="client")
    assert a.rc == 0, a.stdout + a.stderr
    b = run_chain(bin_dir, conf, "ADD", netns=backend, sandbox=host, container_id="backend", runtime_config=rc)
    assert b.rc == 0, b.stdout + b.stderr
    a_ip, b_ip = (r.out["ips"][0]["address"].split("/")[0] for r in (a, b))
    names = [i["name"] for i in b.out["interfaces"]]
    assert names[0] == "eth0" and "leg0" in names, names
    cn, bn = os.path.basename(client), os.path.basename(backend)
    eth0 = next(lk for lk in links(cn) if lk["ifname"] == "eth0")
    assert eth0["linkinfo"]["info_kind"] == "macvlan"
    # a Service as kube-proxy makes one: DNAT in the node to the backend pod
    nsexec(host, "nft", f"add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority dstnat; }}; "
                        f"add rule ip svc pre ip daddr {SERVICE_IP} tcp dport 80 dnat to {b_ip}:8080")
    try:
        with server(bn, "tcp", 8080, "backend"), server(host, "tcp", 9000, "node", NODE):
            assert fetch(cn, "tcp", NODE, 9000).startswith("node"), "pod → its node (through the leg)"
            assert fetch(host, "tcp", b_ip, 8080) == f"backend {NODE}", "node → pod, from the node's own address"
            assert fetch(cn, "tcp", SERVICE_IP, 80) == f"backend {a_ip}", \
                "pod → Service → a pod on the same node: answered through the leg, client address kept"
            assert fetch(dc, "tcp", b_ip, 8080) == f"backend {UNDERLAY_PEER}", "datacenter → pod directly, no NAT"
            assert fetch(cn, "tcp", b_ip, 8080) == f"backend {a_ip}", "pod → pod over the macvlan bridge"
            assert fetch(dc, "tcp", NODE, 18099) == f"backend {UNDERLAY_PEER}", \
                "hostPort from the datacenter: answered through the leg, client address kept"
        chk = run_chain(bin_dir, conf, "CHECK", netns=backend, sandbox=host, container_id="backend", runtime_config=rc,
                        prev=b.out)
        assert chk.rc == 0, chk.stdout
    finally:
        nsexec(host, "nft", "delete", "table", "ip", "svc", check=False)
        for cid, pod, r in (("client", client, a), ("backend", backend, b)):
            d = run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=host, container_id=cid, runtime_config=rc,
                          prev=r.out)
            assert d.rc == 0, d.stdout
    for pod in (cn, bn):
        assert [lk["ifname"] for lk in links(pod)] == ["lo"], links(pod)
        assert "podnet_leg" not in nsexec(pod, "nft", "list", "tables").stdout
        assert "fwmark" not in nsexec(pod, "ip", "rule").stdout
    assert [lk["ifname"] for lk in links(host) if lk["ifname"].startswith("veth")] == [], "a leg's host end is left"
    routes = nsexec(host, "ip", "route").stdout
    assert a_ip not in routes and b_ip not in routes, routes
    assert "18099" not in nsexec(host, "nft", "list", "ruleset").stdout
    assert not list((tmp_path / "ipam").rglob("10.79.*")), "an address is still held"


def test_del_after_the_netns_is_gone_and_a_bad_leg_is_named(bin_dir: str, node: tuple[str, str], make_pod, mode,
                                                            tmp_path: Path) -> None:
    host, _ = node
    pod = make_pod()
    conf = conflist(tmp_path, mode)
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=host, container_id="gone")
    assert r.rc == 0, r.stdout
    nsexec(host, "ip", "netns", "del", os.path.basename(pod), check=False)
    d = run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=host, container_id="gone", prev=r.out)
    assert d.rc == 0, d.stdout
    assert not list((tmp_path / "ipam").rglob("10.79.*"))
    deadline = time.monotonic() + 10       # the kernel destroys a deleted netns (and the leg) asynchronously
    while [lk["ifname"] for lk in links(host) if lk["ifname"].startswith("veth")]:
        assert time.monotonic() < deadline, "the leg's host end outlived the pod's netns"
        time.sleep(0.05)
    bad = conflist(tmp_path, mode, leg={"routes": ["10.96.0.0/33"]})
    other = make_pod()
    e = run_chain(bin_dir, bad, "ADD", netns=other, sandbox=host, container_id="bad")
    assert e.rc == 1 and e.out["code"] == 7 and "leg.routes" in e.out["msg"], e.out
    assert [lk["ifname"] for lk in links(os.path.basename(other))] == ["lo"], "a refused ADD left a link"
    assert not list((tmp_path / "ipam").rglob("10.79.*"))
    bw = conflist(tmp_path, mode, bandwidth={"ingressRate": 1000000, "ingressBurst": 100000})
    e = run_chain(bin_dir, bw, "ADD", netns=other, sandbox=host, container_id="bad")
    assert e.rc == 1 and e.out["code"] == 7 and "bandwidth" in e.out["msg"], e.out
