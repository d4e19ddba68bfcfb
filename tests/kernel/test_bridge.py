"""podnet-bridge + podnet-host-local in real namespaces, in-process and through the agent."""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from podnet.cni.version import SUPPORTED
from podnet.net import probe
from tests.helpers.cni import addrs_in, disable_ipv6, links_in, nsexec, routes_in, run_plugin
from tests.helpers.state import bridge_conf, host_veths, nft_ruleset, reservations

VERSIONS = list(SUPPORTED)


def pod_ip(result: dict[str, Any], version: str) -> str:
    if version in ("0.1.0", "0.2.0"):
        return result["ip4"]["ip"]
    return result["ips"][0]["address"]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del_every_version(version: str, bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path):
    pod = make_pod()
    conf = bridge_conf(tmp_path, mode, version)
    b = f"{bin_dir}/podnet-bridge"
    add = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox)
    assert add.rc == 0, add.stdout + add.stderr
    res = add.out
    assert res["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert "ips" not in res and res["ip4"]["gateway"] == "10.77.0.1"
    else:
        assert ("version" in res["ips"][0]) == version.startswith("0.")
        assert res["interfaces"][res["ips"][0]["interface"]]["sandbox"] == pod
    ip = pod_ip(res, version)
    assert addrs_in(os.path.basename(pod), "eth0") == [ip]
    assert any(r["dst"] == "default" and r["gateway"] == "10.77.0.1" for r in routes_in(os.path.basename(pod)))
    assert probe.ping(pod, "10.77.0.1"), "pod cannot ping its gateway"
    assert ip.split("/")[0] in nft_ruleset(sandbox)
    if version not in ("0.1.0", "0.2.0"):    # an IPv4-only pod's bridge port carries no IPv6 of its own
        port = res["interfaces"][1]["name"]
        assert disable_ipv6(sandbox, port) == "1" and nsexec(sandbox, "ip", "-6", "addr", "show", "dev", port).stdout == ""
    if version >= "0.4.0":
        conf_check = dict(conf, prevResult=res)
        chk = run_plugin(b, "CHECK", conf_check, netns=pod, sandbox=sandbox)
        assert chk.rc == 0, chk.stdout
    dconf = dict(conf, prevResult=res) if version >= "0.4.0" else conf
    d = run_plugin(b, "DEL", dconf, netns=pod, sandbox=sandbox)
    assert d.rc == 0, d.stdout
    assert host_veths(sandbox) == []
    assert reservations(tmp_path) == []
    assert ip.split("/")[0] not in nft_ruleset(sandbox)
    assert [lk["ifname"] for lk in links_in(os.path.basename(pod))] == ["lo"]


def test_check_detects_removed_address_and_route(bin_dir, sandbox, make_pod, mode, tmp_path):
    pod = make_pod()
    conf = bridge_conf(tmp_path, mode)
    b = f"{bin_dir}/podnet-bridge"
    res = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox).out
    nsexec(os.path.basename(pod), "ip", "route", "del", "default")
    chk = run_plugin(b, "CHECK", dict(conf, prevResult=res), netns=pod, sandbox=sandbox)
    assert chk.rc != 0 and "route" in chk.out["msg"]
    nsexec(os.path.basename(pod), "ip", "addr", "flush", "dev", "eth0")
    chk = run_plugin(b, "CHECK", dict(conf, prevResult=res), netns=pod, sandbox=sandbox)
    assert chk.rc != 0 and "address" in chk.out["msg"]
    assert run_plugin(b, "DEL", dict(conf, prevResult=res), netns=pod, sandbox=sandbox).rc == 0


def test_two_pods_reach_each_other_and_repeat_add_is_idempotent(bin_dir, sandbox, make_pod, mode, tmp_path):
    b = f"{bin_dir}/podnet-bridge"
    conf = bridge_conf(tmp_path, mode)
    p1, p2 = make_pod(), make_pod()
    r1 = run_plugin(b, "ADD", conf, netns=p1, container_id="a", sandbox=sandbox).out
    r2 = run_plugin(b, "ADD", conf, netns=p2, container_id="b", sandbox=sandbox).out
    ip1, ip2 = r1["ips"][0]["address"], r2["ips"][0]["address"]
    assert ip1 != ip2
    assert probe.ping(p1, ip2.split("/")[0]) and probe.ping(p2, ip1.split("/")[0])
    # a repeated ADD for the same (container, ifname) keeps its address (the IPAM is idempotent;
    # the interface exists, so bridge reports that and leaves everything as it was)
    again = run_plugin(b, "ADD", conf, netns=p1, container_id="a", sandbox=sandbox)
    assert again.rc != 0 and "already exists" in again.out["msg"]
    assert addrs_in(os.path.basename(p1), "eth0") == [ip1]
    assert len(reservations(tmp_path)) == 2
    for cid, p, r in (("a", p1, r1), ("b", p2, r2)):
        assert run_plugin(b, "DEL", dict(conf, prevResult=r), netns=p, container_id=cid, sandbox=sandbox).rc == 0
    assert reservations(tmp_path) == [] and host_veths(sandbox) == []


def test_failed_add_leaves_nothing(bin_dir, sandbox, make_pod, mode, tmp_path):
    """IFNAME already in the pod: error, no reservation, no host veth, no nft element."""
    pod = make_pod()
    nsexec(os.path.basename(pod), "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    b = f"{bin_dir}/podnet-bridge"
    r = run_plugin(b, "ADD", bridge_conf(tmp_path, mode), netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and "CNI_IFNAME" in r.out["msg"]
    assert reservations(tmp_path) == [] and host_veths(sandbox) == []
    assert "10.77.0." not in nft_ruleset(sandbox)


def test_del_is_idempotent_and_works_without_netns(bin_dir, sandbox, make_pod, mode, tmp_path):
    pod = make_pod()
    b = f"{bin_dir}/podnet-bridge"
    conf = bridge_conf(tmp_path, mode)
    res = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox).out
    subprocess.run(["ip", "netns", "del", os.path.basename(pod)], check=True)
    # containerd's second DEL: empty CNI_NETNS, no prevResult
    assert run_plugin(b, "DEL", dict(conf, prevResult=res), netns=pod, sandbox=sandbox).rc == 0
    assert run_plugin(b, "DEL", conf, netns="", sandbox=sandbox).rc == 0
    assert reservations(tmp_path) == [] and host_veths(sandbox) == []
    assert res["ips"][0]["address"].split("/")[0] not in nft_ruleset(sandbox)
    assert run_plugin(b, "DEL", conf, netns="", container_id="never-added", sandbox=sandbox).rc == 0


def test_parallel_adds_get_distinct_addresses(bin_dir, sandbox, make_pod, mode, tmp_path):
    b = f"{bin_dir}/podnet-bridge"
    conf = bridge_conf(tmp_path, mode)
    pods = [make_pod() for _ in range(32)]

    def add(i: int):
        return run_plugin(b, "ADD", conf, netns=pods[i], container_id=f"par{i}", sandbox=sandbox)

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(add, range(32)))
    assert all(r.rc == 0 for r in results), [r.stdout for r in results if r.rc]
    ips = [r.out["ips"][0]["address"] for r in results]
    assert len(set(ips)) == 32
    assert len(reservations(tmp_path)) == 32

    def delete(i: int):
        return run_plugin(b, "DEL", dict(conf, prevResult=results[i].out), netns=pods[i],
                          container_id=f"par{i}", sandbox=sandbox)

    with ThreadPoolExecutor(16) as ex:
        dels = list(ex.map(delete, range(32)))
    assert all(d.rc == 0 for d in dels)
    left = {n: (tmp_path / "ipam" / "ktest" / n).read_text() for n in reservations(tmp_path)}
    assert left == {} and host_veths(sandbox) == []


def test_ipv6_dual_stack(bin_dir, sandbox, make_pod, mode, tmp_path):
    pod = make_pod()
    conf = bridge_conf(tmp_path, mode)
    conf["ipam"] = {"type": "podnet-host-local", "dataDir": str(tmp_path / "ipam"),
                    "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd00:78::/64"}]],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    b = f"{bin_dir}/podnet-bridge"
    res = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox)
    assert res.rc == 0, res.stdout
    got = sorted(addrs_in(os.path.basename(pod), "eth0"))
    assert got == sorted(i["address"] for i in res.out["ips"])
    assert probe.ping(pod, "fd00:78::1") and probe.ping(pod, "10.78.0.1")
    assert disable_ipv6(sandbox, res.out["interfaces"][1]["name"]) == "0"     # a dual-stack pod's port keeps IPv6
    assert run_plugin(b, "DEL", dict(conf, prevResult=res.out), netns=pod, sandbox=sandbox).rc == 0
    assert reservations(tmp_path) == []


def test_gc_releases_unlisted_attachments(bin_dir, sandbox, make_pod, mode, tmp_path):
    b = f"{bin_dir}/podnet-bridge"
    conf = bridge_conf(tmp_path, mode, "1.1.0")
    p1, p2 = make_pod(), make_pod()
    assert run_plugin(b, "ADD", conf, netns=p1, container_id="keep", sandbox=sandbox).rc == 0
    r2 = run_plugin(b, "ADD", conf, netns=p2, container_id="gone", sandbox=sandbox).out
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert run_plugin(b, "GC", gc, sandbox=sandbox).rc == 0
    assert len(reservations(tmp_path)) == 1
    assert r2["ips"][0]["address"].split("/")[0] not in nft_ruleset(sandbox)
    st = run_plugin(b, "STATUS", conf, sandbox=sandbox)
    assert st.rc == 0, st.stdout


def test_l2_only_bridge_without_ipam(bin_dir, sandbox, make_pod, mode, tmp_path):
    pod = make_pod()
    conf = bridge_conf(tmp_path, mode, ipMasq=False, isGateway=False)
    conf["ipam"] = {}
    b = f"{bin_dir}/podnet-bridge"
    r = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox)
    assert r.rc == 0, r.stdout
    assert "ips" not in r.out and len(r.out["interfaces"]) == 3
    assert addrs_in(os.path.basename(pod), "eth0") == []
    assert disable_ipv6(sandbox, r.out["interfaces"][1]["name"]) == "0"     # no IPAM: the pod may use IPv6 itself
    assert run_plugin(b, "DEL", conf, netns=pod, sandbox=sandbox).rc == 0
