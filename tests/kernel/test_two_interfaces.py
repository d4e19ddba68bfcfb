"""One pod, two networks (the seed's design): eth0 on a podnet bridge as the default route,
net1 on podnet-macvlan to the underlay.  Each DEL removes only its own interface."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from podnet.net import probe
from tests.helpers.cni import links_in, nsexec, run_plugin
from tests.helpers.state import reservations
from tests.helpers.underlay import UNDERLAY_PEER, macvlan_conf


def bridge_conf(tmp_path: Path, mode: dict[str, str]) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kbr", "type": "podnet-bridge", "bridge": "pnbr2", "isGateway": True,
            "ipam": {"type": "podnet-host-local", "subnet": "10.81.0.0/24", "dataDir": str(tmp_path / "ipam"),
                     "routes": [{"dst": "0.0.0.0/0"}]}, **mode}


def route_dev(pod: str, dst: str) -> str:
    return str(json.loads(nsexec(os.path.basename(pod), "ip", "-j", "route", "get", dst).stdout)[0]["dev"])


def test_bridge_eth0_plus_macvlan_net1(bin_dir: str, sandbox: str, underlay: str, make_pod, mode,
                                       tmp_path: Path) -> None:
    br, mv = f"{bin_dir}/podnet-bridge", f"{bin_dir}/podnet-macvlan"
    bconf, mconf = bridge_conf(tmp_path, mode), macvlan_conf(tmp_path, mode)
    pod, peer_pod = make_pod(), make_pod()
    r0 = run_plugin(br, "ADD", bconf, netns=pod, sandbox=sandbox, ifname="eth0")
    r1 = run_plugin(mv, "ADD", mconf, netns=pod, sandbox=sandbox, ifname="net1")
    r2 = run_plugin(mv, "ADD", mconf, netns=peer_pod, sandbox=sandbox, ifname="net1", container_id="c2")
    assert r0.rc == r1.rc == r2.rc == 0, (r0.stdout, r1.stdout, r2.stdout)
    assert route_dev(pod, UNDERLAY_PEER) == "net1"
    assert route_dev(pod, "192.0.2.1") == "eth0"   # everything else: the default route via the bridge
    assert probe.ping(pod, UNDERLAY_PEER), "underlay not reachable over net1"
    assert probe.ping(pod, r2.out["ips"][0]["address"].split("/")[0]), "underlay pod not reachable over net1"
    assert probe.ping(pod, "10.81.0.1"), "bridge gateway not reachable over eth0"

    assert run_plugin(mv, "DEL", mconf, netns=pod, sandbox=sandbox, ifname="net1").rc == 0
    names = {lk["ifname"] for lk in links_in(os.path.basename(pod))}
    assert "net1" not in names and "eth0" in names
    assert probe.ping(pod, "10.81.0.1"), "eth0 broke when net1 was deleted"
    assert run_plugin(br, "DEL", bconf, netns=pod, sandbox=sandbox, ifname="eth0").rc == 0
    assert {lk["ifname"] for lk in links_in(os.path.basename(pod))} == {"lo"}
    assert run_plugin(mv, "DEL", mconf, netns=peer_pod, sandbox=sandbox, ifname="net1", container_id="c2").rc == 0
    assert reservations(tmp_path, "kbr") == [] and reservations(tmp_path, "kmv") == []
