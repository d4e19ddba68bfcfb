"""The Node watch at cluster scale (issue 35): it keeps what routing reads of each Node
(NodeRoutes), and a Node whose kept part did not change — a kubelet's status heartbeat, its images,
its conditions — raises no event, so it wakes no routing pass (thousands of Nodes report status
every few minutes each: several events per second, each a whole pass over every route)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from lightkube.resources.core_v1 import Node

from podnet.agent.kubepeers import NodeRoutes
from podnet.agent.kubewatch import Informer


def node(name: str, rv: int, cidr: str = "10.244.1.0/24", ready: str = "True", ann: dict[str, str] | None = None
         ) -> Node:
    return cast(Node, Node.from_dict({
        "metadata": {"name": name, "resourceVersion": str(rv),
                     "annotations": {"podnet.io/vtep-mac": "0a:58:00:00:00:01", "kubeadm/other": str(rv),
                                     **(ann or {})}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.97.0.2"}, {"type": "Hostname", "address": name}],
                   "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": f"2026-12-07T20:{rv:02d}:00Z"}],
                   "images": [{"names": [f"registry.example/img:{i}"], "sizeBytes": 1000 + i} for i in range(50)]}}))


class Listing(list[Any]):
    resourceVersion = "1"


class FakeClient:
    def __init__(self, objs: list[Node]) -> None:
        self.objs = objs

    def list(self, _res: Any, **_kw: Any) -> Listing:
        return Listing(self.objs)


def run(events: list[tuple[str, Node]]) -> tuple[Informer, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    inf = Informer(cast(Any, FakeClient([node("n2", 1)])), Node, on_event=lambda k, o: seen.append((k, o)), keep=NodeRoutes.of,
                   quiet_unchanged=True)

    def stream(_rv: str) -> Iterator[tuple[str, Node]]:
        yield from events
        inf._stopped.set()

    inf._watch_from = stream  # type: ignore[method-assign,assignment]
    inf._run()
    return inf, seen


def test_status_heartbeats_raise_no_event_and_a_route_change_does() -> None:
    heartbeats = [("MODIFIED", node("n2", rv, ready="True" if rv % 2 else "Unknown")) for rv in range(2, 30)]
    inf, seen = run([*heartbeats, ("MODIFIED", node("n2", 30, cidr="10.244.9.0/24")),
                     ("MODIFIED", node("n2", 31, cidr="10.244.9.0/24", ann={"podnet.io/wg-pubkey": "k"})),
                     ("DELETED", node("n2", 32, cidr="10.244.9.0/24"))])
    assert [k for k, _ in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert seen[0][1].pod_cidrs == ("10.244.9.0/24",)
    assert ("podnet.io/wg-pubkey", "k") in seen[1][1].annotations
    assert inf.snapshot() == {}


def test_the_cache_holds_only_what_routing_reads() -> None:
    inf, _ = run([("ADDED", node("n3", 2, cidr="10.244.3.0/24"))])
    kept = inf.snapshot()
    assert kept["n3"] == NodeRoutes(("10.244.3.0/24",), ("10.97.0.2",), (("podnet.io/vtep-mac", "0a:58:00:00:00:01"),))
    assert kept["n2"].pod_cidrs == ("10.244.1.0/24",)
