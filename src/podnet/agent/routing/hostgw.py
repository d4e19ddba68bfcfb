"""host-gw (flannel's name): every pod CIDR another live node owns is routed via that node's
underlay address.  No encapsulation, so nodes must share an L2 segment: a next hop that is not
on a directly connected network is refused, with the reason in the log and the pass result."""
from __future__ import annotations

from ...net.rtnl import PODNET_PROTO, Rtnl
from .base import (
    UNREACHABLE,
    Families,
    Hop,
    IPNet,
    NodeIdentity,
    NodeInfo,
    Reconcile,
    encryption_mismatches,
    hop_of,
    remote_next_hops,
    sync_routes,
    unreachable_for,
)


class HostGw:
    name = "host-gw"

    def __init__(self, me: NodeIdentity) -> None:
        self.me = me
        self.families = Families()

    def start(self, host: Rtnl) -> None:
        """Nothing to make: plain routes."""

    def publish(self) -> dict[str, str]:
        return {}

    def apply(self, host: Rtnl, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> Reconcile:
        entries = [e for fam in self.families.update(nodes, owners) for e in host.routes(fam)]   # one dump
        connected = [e.dst for e in entries if e.gw is None and e.dst.prefixlen > 0 and e.proto != PODNET_PROTO]
        have = {(e.dst, hop_of(e)) for e in entries if e.proto == PODNET_PROTO}

        def refuse(dst: IPNet, gw: Hop) -> str:
            return "" if any(gw in net for net in connected) else "next hop not on a directly connected network"

        def add(dst: IPNet, gw: Hop) -> None:
            assert not isinstance(gw, str)
            host.add_route(dst, gw=gw, replace=True, proto=PODNET_PROTO)
        why = unreachable_for(encryption_mismatches(self.me.name, False, nodes), owners)
        want: dict[IPNet, Hop] = {**remote_next_hops(self.me.name, nodes, owners), **dict.fromkeys(why, UNREACHABLE)}
        return sync_routes(host, want, add, refuse, have, why)

    def pod_mtu(self, host: Rtnl) -> int:
        return 0

    def stop(self) -> None:
        """Routes stay."""
