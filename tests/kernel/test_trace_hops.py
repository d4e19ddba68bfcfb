"""The trace's hop code (agent/trace.py) against a node namespace built as the VXLAN backend
builds it — with the faults a live agent would repair at once (it watches its routes, neighbour
and FDB entries): each one is named at its hop, with what to check."""
from __future__ import annotations

import ipaddress
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from podnet.agent import trace
from podnet.net.netns import move_this_thread

REMOTE_MAC = "02:00:00:00:00:02"


def _sh(ns: str, *cmds: str) -> None:
    for cmd in cmds:
        subprocess.run(["ip", "netns", "exec", ns, *cmd.split()], check=True)


def _in(path: str, fn: Callable[[], Any]) -> Any:
    """Run fn in a thread moved into the netns (the agent runs in its node's netns)."""
    out: list[Any] = []
    th = threading.Thread(target=lambda: (move_this_thread(path), out.append(fn())))
    th.start()
    th.join(30)
    return out[0]


def test_vxlan_route_neighbour_and_fdb_faults(make_pod) -> None:  # type: ignore[no-untyped-def]
    path = make_pod()
    ns = os.path.basename(path)
    _sh(ns, "ip link add up0 type veth peer name up0p", "ip addr add 10.98.0.1/24 dev up0",
        "ip link set up0 up", "ip link set up0p up",
        "ip link add podnet.1 type vxlan id 1 local 10.98.0.1 dstport 8472 nolearning dev up0",
        "ip addr add 10.244.0.0/32 dev podnet.1", "ip link set podnet.1 up",
        "ip route add 10.244.1.0/26 via 10.244.1.0 dev podnet.1 onlink",
        f"ip neigh add 10.244.1.0 lladdr {REMOTE_MAC} dev podnet.1 nud permanent",
        f"bridge fdb add {REMOTE_MAC} dev podnet.1 dst 10.98.0.2")
    view = trace.NodeView("n1", "10.98.0.1", [ipaddress.ip_network("10.244.0.0/16")])
    src, dst = ipaddress.ip_address("10.98.0.1"), ipaddress.ip_address("10.244.1.5")

    def run() -> dict[str, Any]:
        return _in(path, lambda: trace.origin(view, src, dst, "TCP", 80))

    ok = run()
    assert ok["next"] == {"kind": "node", "addr": "10.98.0.2"}
    assert ok["hops"][-1]["what"] == f"route {dst} via 10.244.1.0 dev podnet.1 (vxlan, VTEP {REMOTE_MAC} at 10.98.0.2)"

    _sh(ns, f"bridge fdb del {REMOTE_MAC} dev podnet.1 dst 10.98.0.2")
    no_fdb = run()
    assert no_fdb["next"]["kind"] == "broken" and not no_fdb["hops"][-1]["ok"]
    assert f"no VXLAN FDB entry for {REMOTE_MAC}" in no_fdb["hops"][-1]["what"]
    assert "bridge fdb show dev podnet.1" in no_fdb["hops"][-1]["fix"]

    _sh(ns, f"bridge fdb add {REMOTE_MAC} dev podnet.1 dst 10.98.0.2", "ip neigh del 10.244.1.0 dev podnet.1")
    no_neigh = run()
    assert "no neighbour entry for 10.244.1.0" in no_neigh["hops"][-1]["what"] and not no_neigh["hops"][-1]["ok"]

    _sh(ns, "ip route del 10.244.1.0/26")
    no_route = run()
    assert no_route["hops"][-1]["what"].startswith(f"node n1 has no route to {dst}")
    assert "remote node's block" in no_route["hops"][-1]["fix"]

    _sh(ns, "ip route add default via 10.98.0.254 dev up0")       # only the default route covers it now
    default_only = run()
    assert f"no route to {dst}'s block: only its default route" in default_only["hops"][-1]["what"]
