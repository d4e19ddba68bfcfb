"""hostPort on 127.0.0.1 (and ::1) reached from the node as Kubernetes' conformance check does
(issue 37): three pods map one host port — pod1 `hostIP: 127.0.0.1` TCP, pod2 the node's
address TCP, pod3 the node's address UDP — and a client on the node connects to 127.0.0.1 with
its source bound to the node's address (`curl --interface NODE_IP`, so that no 127.0.0.1 source
needs to leave the host), to the node's address over TCP and UDP, and to 127.0.0.1 without
binding.  The one-exec `podnet` plugin in each pod mode, through the agent and in-process."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import nsexec, run_chain
from tests.helpers.traffic import fetch, server

NODE4, NODE6 = "192.168.79.1", "fd00:79::1"
PORT = 54323


def reached(ns: str, proto: str, host: str, banner: str, source: str = "", within: float = 10.0) -> bool:
    """Whether `banner`'s pod answers host:PORT within `within` seconds (a fresh bridge port's first
    IPv6 SYN may be lost: the conformance check retries too, 5 × 5 s)."""
    deadline = time.monotonic() + within
    while True:
        if fetch(ns, proto, host, PORT, timeout=1, source=source).startswith(banner):
            return True
        if time.monotonic() > deadline:
            return False


def node_with_uplink(sandbox: str) -> None:
    """The node's own address on an uplink (its peer stays in the node: only the address matters)."""
    nsexec(sandbox, "ip", "link", "add", "nodeup0", "type", "veth", "peer", "name", "nodeup1")
    nsexec(sandbox, "ip", "addr", "add", f"{NODE4}/24", "dev", "nodeup0")
    nsexec(sandbox, "ip", "-6", "addr", "add", f"{NODE6}/64", "dev", "nodeup0", "nodad")
    for dev in ("nodeup0", "nodeup1"):
        nsexec(sandbox, "ip", "link", "set", dev, "up")


def conflist(tmp_path: Path, mode: dict[str, str], pod_mode: str, dual: bool) -> dict[str, Any]:
    ranges = [[{"subnet": "10.83.0.0/24"}]] + ([[{"subnet": "fd00:83::/64"}]] if dual else [])
    plugin: dict[str, Any] = {
        "type": "podnet", "mode": pod_mode, **mode, "portmap": {"snat": True},
        "capabilities": {"portMappings": True},
        "ipam": {"type": "podnet-host-local", "ranges": ranges, "dataDir": str(tmp_path / "ipam"),
                 "routes": [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if dual else [])}}
    if pod_mode == "bridge":
        plugin.update(bridge="pnbr37", isGateway=True, hairpinMode=True)
    return {"cniVersion": "1.0.0", "name": "khp", "plugins": [plugin]}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("pod_mode", ["ptp", "bridge"])
def test_three_pods_one_host_port_reached_from_the_node(bin_dir: str, sandbox: str, make_pod, mode,
                                                        tmp_path: Path, pod_mode: str, family: int) -> None:
    node_with_uplink(sandbox)
    node, localhost = (NODE4, "127.0.0.1") if family == 4 else (NODE6, "::1")
    conf = conflist(tmp_path, mode, pod_mode, dual=family == 6)
    pods = {name: make_pod() for name in ("pod1", "pod2", "pod3")}
    maps = {"pod1": (localhost, "tcp"), "pod2": (node, "tcp"), "pod3": (node, "udp")}
    made = {}
    for name, (host_ip, proto) in maps.items():
        rc = {"portMappings": [{"HostPort": PORT, "ContainerPort": 8080, "Protocol": proto.upper(), "HostIP": host_ip}]}
        r = run_chain(bin_dir, conf, "ADD", netns=pods[name], sandbox=sandbox, container_id=name, runtime_config=rc)
        assert r.rc == 0, r.stdout + r.stderr
        made[name] = (rc, r.out)
    try:
        p1, p2, p3 = (os.path.basename(pods[n]) for n in ("pod1", "pod2", "pod3"))
        any_addr = "::" if family == 6 else "0.0.0.0"
        with server(p1, "tcp", 8080, "pod1", any_addr), server(p2, "tcp", 8080, "pod2", any_addr), \
                server(p3, "udp", 8080, "pod3", any_addr):
            # the conformance check: source bound to the node's address
            assert reached(sandbox, "tcp", localhost, "pod1", source=node), \
                f"{localhost}:{PORT} from the node with source {node}"
            assert reached(sandbox, "tcp", node, "pod2"), f"{node}:{PORT}/tcp"
            assert reached(sandbox, "udp", node, "pod3"), f"{node}:{PORT}/udp"
            unbound = fetch(sandbox, "tcp", localhost, PORT, timeout=1)
            if family == 4:     # 127.0.0.1 as the source: masqueraded on its way to the pod
                assert unbound.startswith("pod1"), f"{localhost}:{PORT} without a source address: {unbound}"
            else:               # ::1 cannot leave lo: IPv6 has no route_localnet (as the reference portmap)
                assert unbound.startswith("ERROR"), unbound
    finally:
        for name, (rc, out) in made.items():
            d = run_chain(bin_dir, conf, "DEL", netns=pods[name], sandbox=sandbox, container_id=name,
                          runtime_config=rc, prev=out)
            assert d.rc == 0, d.stdout
