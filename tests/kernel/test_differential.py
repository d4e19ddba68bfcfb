"""The same config through the Go reference plugins and podnet: results and kernel state agree."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GO_PLUGINS, have_go_plugins
from tests.helpers.cni import addrs_in, nsexec, routes_in, run_plugin

pytestmark = pytest.mark.skipif(not have_go_plugins(), reason="containernetworking-plugins not installed")


def normalise(res: dict[str, Any]) -> dict[str, Any]:
    res = json.loads(json.dumps(res))
    if res.get("dns") == {}:
        del res["dns"]  # the Debian 1.1.1 binaries print an empty dns object
    for i in res.get("interfaces", []):
        i["mac"] = "MAC" if i.get("mac") else None
        i["name"] = re.sub(r"^veth[0-9a-f]{8}$", "vethX", i["name"])
        if "sandbox" in i:
            i["sandbox"] = "POD"
    return res


def kernel_state(sandbox: str, pod: str) -> dict[str, Any]:
    pod_ns = os.path.basename(pod)
    return {
        "pod_addrs": addrs_in(pod_ns, "eth0"),
        "pod_routes": sorted((r["dst"], r.get("gateway", "")) for r in routes_in(pod_ns)),
        "bridge_addrs": addrs_in(sandbox, "dfbr0"),
        "pod_mtu": json.loads(nsexec(pod_ns, "ip", "-j", "link", "show", "eth0").stdout)[0]["mtu"],
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("variant", ["gateway-masq", "default-gw-mtu"])
def test_bridge_host_local_agree(version: str, variant: str, bin_dir: str, sandbox: str, make_pod, tmp_path: Path):
    def conf(prefix: str) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": version, "name": "diffnet", "type": f"{prefix}bridge", "bridge": "dfbr0",
                             "ipam": {"type": f"{prefix}host-local", "subnet": "10.88.0.0/24",
                                      "dataDir": str(tmp_path / prefix.strip("-") / "ipam"),
                                      "routes": [{"dst": "192.168.250.0/24"}]}}
        if variant == "gateway-masq":
            c.update(isGateway=True, ipMasq=True)
        else:
            c.update(isDefaultGateway=True, mtu=1400)
        return c

    outcomes = {}
    for side, binary, prefix in (("go", f"{GO_PLUGINS}/bridge", ""), ("podnet", f"{bin_dir}/podnet-bridge", "podnet-")):
        pod = make_pod()
        c = conf(prefix)
        r = run_plugin(binary, "ADD", c, netns=pod, sandbox=sandbox, cni_path=os.path.dirname(binary))
        assert r.rc == 0, f"{side}: {r.stdout} {r.stderr}"
        outcomes[side] = (normalise(r.out), kernel_state(sandbox, pod))
        d = run_plugin(binary, "DEL", dict(c, prevResult=r.out) if version != "0.3.1" else c, netns=pod,
                       sandbox=sandbox, cni_path=os.path.dirname(binary))
        assert d.rc == 0, f"{side} DEL: {d.stdout}"
        leftover = [f for f in os.listdir(tmp_path / prefix.strip("-") / "ipam" / "diffnet")
                    if f[0].isdigit()]
        assert leftover == [], f"{side} left reservations {leftover}"
    go, pn = outcomes["go"], outcomes["podnet"]
    assert pn[0] == go[0]
    assert pn[1] == go[1]


def test_error_codes_agree_for_bad_json_and_missing_env(bin_dir: str, sandbox: str):
    for binary in (f"{GO_PLUGINS}/bridge", f"{bin_dir}/podnet-bridge"):
        bad = run_plugin(binary, "ADD", b"{not json", netns="/run/netns/none", sandbox=sandbox)
        assert bad.rc != 0 and bad.out["code"] == 6, binary
        miss = run_plugin(binary, "ADD", {"cniVersion": "1.0.0", "name": "x", "type": "bridge"}, netns="",
                          sandbox=sandbox)
        assert miss.rc != 0 and miss.out["code"] == 4 and "CNI_NETNS" in miss.out["msg"], binary


def link_state(sandbox: str, pod: str, ifname: str) -> dict[str, Any]:
    pod_ns = os.path.basename(pod)
    link = json.loads(nsexec(pod_ns, "ip", "-j", "-d", "link", "show", ifname).stdout)[0]
    info = link.get("linkinfo", {})
    return {
        "addrs": addrs_in(pod_ns, ifname),
        "routes4": sorted((r["dst"], r.get("gateway", ""), r.get("scope", ""), r.get("prefsrc", ""))
                          for r in routes_in(pod_ns)),
        "mtu": link["mtu"], "up": "UP" in link["flags"], "kind": info.get("info_kind", ""),
        "mode": info.get("info_data", {}).get("mode", ""), "alias": link.get("ifalias", ""),
        "host_routes": sorted((r["dst"], r.get("scope", "")) for r in routes_in(sandbox)
                              if r["dst"].startswith("10.")),
    }


def run_both(conf_for, bin_dir: str, sandbox: str, make_pod, version: str, plugin: str, ifname: str = "eth0",
             before_each=None) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:  # type: ignore[no-untyped-def]
    outcomes = {}
    for side, binary, prefix in (("go", f"{GO_PLUGINS}/{plugin}", ""), ("podnet", f"{bin_dir}/podnet-{plugin}",
                                                                       "podnet-")):
        if before_each:
            before_each()
        pod = make_pod()
        c = conf_for(prefix)
        r = run_plugin(binary, "ADD", c, netns=pod, sandbox=sandbox, cni_path=os.path.dirname(binary), ifname=ifname)
        assert r.rc == 0, f"{side}: {r.stdout} {r.stderr}"
        outcomes[side] = (normalise(r.out), link_state(sandbox, pod, ifname))
        if version != "0.3.1":
            chk = run_plugin(binary, "CHECK", dict(c, prevResult=r.out), netns=pod, sandbox=sandbox,
                             cni_path=os.path.dirname(binary), ifname=ifname)
            assert chk.rc == 0, f"{side} CHECK: {chk.stdout}"
        d = run_plugin(binary, "DEL", dict(c, prevResult=r.out) if version != "0.3.1" else c, netns=pod,
                       sandbox=sandbox, cni_path=os.path.dirname(binary), ifname=ifname)
        assert d.rc == 0, f"{side} DEL: {d.stdout}"
    return outcomes


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_ptp_agrees(version: str, bin_dir: str, sandbox: str, make_pod, tmp_path: Path) -> None:
    def conf(prefix: str) -> dict[str, Any]:
        return {"cniVersion": version, "name": "diffptp", "type": f"{prefix}ptp", "mtu": 1380,
                "ipam": {"type": f"{prefix}host-local", "subnet": "10.89.0.0/24",
                         "dataDir": str(tmp_path / prefix.strip("-") / "ipam"), "routes": [{"dst": "0.0.0.0/0"}]}}
    out = run_both(conf, bin_dir, sandbox, make_pod, version, "ptp")
    assert out["podnet"][0] == out["go"][0]
    go_state, pn_state = out["go"][1], out["podnet"][1]
    assert pn_state == go_state


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_macvlan_agrees(version: str, bin_dir: str, sandbox: str, make_pod, tmp_path: Path) -> None:
    nsexec(sandbox, "ip", "link", "add", "dfmaster", "type", "veth", "peer", "name", "dfpeer")
    nsexec(sandbox, "ip", "link", "set", "dfmaster", "up")

    def conf(prefix: str) -> dict[str, Any]:
        return {"cniVersion": version, "name": "diffmv", "type": f"{prefix}macvlan", "master": "dfmaster",
                "mode": "private", "mtu": 1300,
                "ipam": {"type": f"{prefix}host-local", "subnet": "10.90.0.0/24",
                         "dataDir": str(tmp_path / prefix.strip("-") / "ipam"), "routes": [{"dst": "0.0.0.0/0"}]}}
    out = run_both(conf, bin_dir, sandbox, make_pod, version, "macvlan")
    assert out["podnet"] == out["go"]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_host_device_agrees(version: str, bin_dir: str, sandbox: str, make_pod, tmp_path: Path) -> None:
    nsexec(sandbox, "ip", "link", "add", "dfdev0", "type", "veth", "peer", "name", "dfdev0p")

    def conf(prefix: str) -> dict[str, Any]:
        return {"cniVersion": version, "name": "diffhd", "type": f"{prefix}host-device", "device": "dfdev0",
                "ipam": {"type": f"{prefix}static", "addresses": [{"address": "10.91.0.5/24", "gateway": "10.91.0.1"}],
                         "routes": [{"dst": "0.0.0.0/0"}]}}

    def device_is_home() -> None:
        assert "dfdev0" in [lk["ifname"] for lk in json.loads(nsexec(sandbox, "ip", "-j", "link").stdout)]
    out = run_both(conf, bin_dir, sandbox, make_pod, version, "host-device", ifname="net1",
                   before_each=device_is_home)
    device_is_home()
    assert out["podnet"] == out["go"]
