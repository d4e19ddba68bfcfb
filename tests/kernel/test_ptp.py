"""podnet-ptp in real namespaces: routed pods, in-process and through the agent."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from podnet.cni.version import SUPPORTED
from podnet.net import probe
from tests.helpers.cni import addrs_in, disable_ipv6, links_in, nsexec, routes_in, run_plugin
from tests.helpers.state import reservations

VERSIONS = [v for v in SUPPORTED if v >= "0.3.1"]   # interfaces in results


def ptp_conf(tmp_path: Path, mode: dict[str, str], version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "ktest", "type": "podnet-ptp", "ipMasq": True, "mtu": 1400,
            "ipam": {"type": "podnet-host-local", "subnet": "10.78.0.0/24", "dataDir": str(tmp_path / "ipam"),
                     "routes": [{"dst": "0.0.0.0/0"}]}, **mode, **extra}


def host_veths(sandbox: str) -> list[str]:
    return [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("veth")]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_routes_check_del(version: str, bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    pod = make_pod()
    pns = os.path.basename(pod)
    conf = ptp_conf(tmp_path, mode, version)
    b = f"{bin_dir}/podnet-ptp"
    add = run_plugin(b, "ADD", conf, netns=pod, sandbox=sandbox)
    assert add.rc == 0, add.stdout + add.stderr
    res = add.out
    ip = res["ips"][0]["address"]
    assert res["ips"][0]["interface"] == 1 and res["interfaces"][1]["sandbox"] == pod
    assert res["ips"][0]["gateway"] == "10.78.0.1"
    assert addrs_in(pns, "eth0") == [ip]
    routes = {(r["dst"], r.get("gateway"), r.get("scope")) for r in routes_in(pns)}
    assert ("10.78.0.1", None, "link") in routes            # gw/32 on the link
    assert ("10.78.0.0/24", "10.78.0.1", None) in routes      # the subnet through the gateway
    assert ("default", "10.78.0.1", None) in routes
    assert not any(r["dst"] == "10.78.0.0/24" and "gateway" not in r for r in routes_in(pns))
    hv = res["interfaces"][0]["name"]
    assert addrs_in(sandbox, hv) == ["10.78.0.1/32"]
    # an IPv4-only pod's host end carries no IPv6 (no link-local, no fe80::/64 route on the host)
    assert disable_ipv6(sandbox, hv) == "1" and nsexec(sandbox, "ip", "-6", "addr", "show", "dev", hv).stdout == ""
    assert any(r["dst"] == ip.split("/")[0] and r["dev"] == hv for r in routes_in(sandbox))
    mtu = [lk["mtu"] for lk in links_in(pns) if lk["ifname"] == "eth0"]
    assert mtu == [1400]
    assert probe.ping(pod, "10.78.0.1")
    if version >= "0.4.0":
        chk = run_plugin(b, "CHECK", dict(conf, prevResult=res), netns=pod, sandbox=sandbox)
        assert chk.rc == 0, chk.stdout
    d = run_plugin(b, "DEL", dict(conf, prevResult=res), netns=pod, sandbox=sandbox)
    assert d.rc == 0, d.stdout
    assert host_veths(sandbox) == [] and reservations(tmp_path) == []
    assert ip.split("/")[0] not in nsexec(sandbox, "nft", "list", "ruleset").stdout
    assert run_plugin(b, "DEL", conf, netns=pod, sandbox=sandbox).rc == 0


def test_two_routed_pods_reach_each_other_and_check_notices_damage(bin_dir: str, sandbox: str, make_pod, mode,
                                                                   tmp_path: Path) -> None:
    conf = ptp_conf(tmp_path, mode)
    b = f"{bin_dir}/podnet-ptp"
    pods = [make_pod(), make_pod()]
    res = [run_plugin(b, "ADD", conf, netns=p, sandbox=sandbox, container_id=f"c{i}") for i, p in enumerate(pods)]
    assert all(r.rc == 0 for r in res), [r.stdout for r in res]
    other = res[1].out["ips"][0]["address"].split("/")[0]
    assert probe.ping(pods[0], other), "ptp pods cannot reach each other through the host"
    nsexec(os.path.basename(pods[0]), "ip", "route", "del", "10.78.0.0/24")
    chk = run_plugin(b, "CHECK", dict(conf, prevResult=res[0].out), netns=pods[0], sandbox=sandbox, container_id="c0")
    assert chk.rc != 0 and chk.out["code"] == 999 and "10.78.0.0/24" in chk.out["msg"]
    for i, p in enumerate(pods):
        assert run_plugin(b, "DEL", conf, netns=p, sandbox=sandbox, container_id=f"c{i}").rc == 0
    assert host_veths(sandbox) == [] and reservations(tmp_path) == []


def test_dual_stack(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    pod = make_pod()
    conf = ptp_conf(tmp_path, mode, ipMasq=False)
    conf["ipam"] = {"type": "podnet-host-local", "dataDir": str(tmp_path / "ipam"),
                    "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd78::/64"}]]}
    add = run_plugin(f"{bin_dir}/podnet-ptp", "ADD", conf, netns=pod, sandbox=sandbox)
    assert add.rc == 0, add.stdout
    assert probe.ping(pod, "fd78::1"), "pod cannot reach its IPv6 gateway"
    assert disable_ipv6(sandbox, add.out["interfaces"][0]["name"]) == "0"     # a dual-stack pod's host end keeps IPv6
    assert run_plugin(f"{bin_dir}/podnet-ptp", "DEL", conf, netns=pod, sandbox=sandbox).rc == 0


def test_missing_ipam_and_existing_ifname_fail_cleanly(bin_dir: str, sandbox: str, make_pod, mode,
                                                       tmp_path: Path) -> None:
    pod = make_pod()
    conf = ptp_conf(tmp_path, mode)
    no_ipam = {k: v for k, v in conf.items() if k != "ipam"}
    r = run_plugin(f"{bin_dir}/podnet-ptp", "ADD", no_ipam, netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and "ipam" in r.out["msg"]
    nsexec(os.path.basename(pod), "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    r = run_plugin(f"{bin_dir}/podnet-ptp", "ADD", conf, netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and "CNI_IFNAME" in r.out["msg"]
    assert host_veths(sandbox) == [] and reservations(tmp_path) == []
