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
