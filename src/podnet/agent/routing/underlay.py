"""The underlay "backend" (pod-network underlay).  Pods sit on the datacenter network (eth0 a
macvlan/ipvlan child of the node's NIC): the network itself carries their traffic between nodes,
so the node's main routing table holds no podnet route (this backend removes any a previous routed
configuration left).  The node still registers (its blocks stay affine to it) and the loop still
runs (a node that dies still has its blocks reclaimed).

One thing does follow the other nodes: traffic the node *forwards from its pods' legs* (a Service
client's packet DNATed here to a pod on another node, and that pod's answers) must cross the node
that did the DNAT both ways, so such packets are routed by a table of their own (net/leg.py:
FORWARD_TABLE, chosen by a mark the node's `inet podnet_underlay` table sets on leg traffic) that
sends each remote block to its node.  Pod ↔ pod never uses it: it never reaches a node.

At start it checks that the kernel can make the pods' link type on the uplink: a kernel without
ipvlan refuses `underlay-link: ipvlan` here, with the reason, rather than at every pod's ADD.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from ...net import leg, nft
from ...net.errors import LinkKindUnsupported, NetError
from ...net.rtnl import PODNET_PROTO, Rtnl, open_rtnl
from ..config import ConfigError
from .base import IPNet, NodeIdentity, NodeInfo, Reconcile, remote_next_hops, sync_routes

FORWARD_RULE_PRIORITY = 1001


class Underlay:
    name = "underlay"

    def __init__(self, me: NodeIdentity, interface: str = "", link: str = "macvlan",
                 pools: Iterable[IPNet] = ()) -> None:
        self.me, self.link, self.pools = me, link, list(pools)
        with open_rtnl() as host:
            self.interface = interface or self._holder(host)
            self._check_link_type(host)

    def _holder(self, host: Rtnl) -> str:
        lk = host.link_holding(self.me.addr)
        if lk is None:
            raise ConfigError(f"underlay-interface: no interface holds this node's address {self.me.addr}: give it")
        return lk.name

    def _check_link_type(self, host: Rtnl) -> None:
        """Make (and delete at once) a link of the pods' type on the uplink."""
        up = host.link(self.interface)
        if up is None:
            raise ConfigError(f"underlay-interface: {self.interface!r} does not exist on this node")
        probe = "pnchk" + os.urandom(4).hex()
        attrs = {"macvlan_mode": "bridge"} if self.link == "macvlan" else {"ipvlan_mode": 0}
        try:
            host.add_link(probe, self.link, None, link=up.index, **attrs)
        except LinkKindUnsupported:
            raise ConfigError(f"underlay-link: this kernel has no {self.link} (pods cannot be made): "
                              f"use {'macvlan' if self.link == 'ipvlan' else 'ipvlan'} or a kernel with it") from None
        except NetError as e:
            raise ConfigError(f"underlay-link: a {self.link} child of {self.interface} cannot be made: {e}") from None
        probe_link = host.link(probe)
        if probe_link is not None:
            host.del_link(probe_link.index)

    def start(self, host: Rtnl) -> None:
        """The node's table for its legs and the rule that sends marked traffic to FORWARD_TABLE."""
        nft.run(leg.node_script(self.pools))
        for fam in (4, 6):
            host.fwmark_rule("add", fam, leg.FORWARD_MARK, leg.FORWARD_TABLE, FORWARD_RULE_PRIORITY)

    def publish(self) -> dict[str, str]:
        return {}

    def apply(self, host: Rtnl, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> Reconcile:
        r = sync_routes(host, {}, lambda _dst, _hop: None)        # the main table: no podnet route
        want = remote_next_hops(self.me.name, nodes, owners)
        have = {(e.dst, e.gw) for fam in (4, 6) for e in host.routes(fam, table=leg.FORWARD_TABLE)
                if e.proto == PODNET_PROTO}
        for dst, gw in sorted(want.items(), key=lambda x: str(x[0])):
            if (dst, gw) not in have:
                try:
                    host.add_route(dst, gw=gw, table=leg.FORWARD_TABLE, replace=True, proto=PODNET_PROTO)
                    r.added.append(f"{dst} via {gw} (leg table)")
                except NetError as e:
                    r.refused.append(f"{dst} via {gw} (leg table): {e}")
        for dst, old in have:
            if want.get(dst) != old:
                try:
                    host.del_route(dst, gw=old, table=leg.FORWARD_TABLE)
                    r.removed.append(f"{dst} via {old} (leg table)")
                except NetError:
                    pass
        return r

    def pod_mtu(self, host: Rtnl) -> int:
        return 0        # the pods' link takes the uplink's MTU

    def stop(self) -> None:
        """Nothing to leave in place."""
