"""Cross-node routes, host-gw style: every block another live node owns is routed via that
node's underlay address.  The cluster IPAM in etcd is the source of truth (nodes under
leases, blocks with their affine node); this module only makes the kernel agree with it.

Routes podnet owns carry rtnetlink protocol PODNET_PROTO, so reconciling never touches a
route somebody else made, and a route deleted by hand comes back on the next pass.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..ipam.cluster import ClusterIpam
from ..net.errors import NetError
from ..net.rtnl import PODNET_PROTO, Rtnl, open_rtnl

log = logging.getLogger(__name__)

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def node_addresses(ipam: ClusterIpam) -> dict[str, IPAddr]:
    """Live nodes (their lease holds) and the underlay address each registered."""
    out = {}
    for e in ipam.kv.get_prefix(f"{ipam.prefix}nodes/"):
        try:
            info = json.loads(e.value)
            out[info["node"]] = ipaddress.ip_address(info["addr"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def desired_routes(me: str, nodes: dict[str, IPAddr], owners: dict[IPNet, str]) -> dict[IPNet, IPAddr]:
    """block → next hop, for blocks affine to other live nodes of the same address family."""
    return {cidr: nodes[node] for cidr, node in owners.items()
            if node and node != me and node in nodes and nodes[node].version == cidr.version}


def block_owners(ipam: ClusterIpam) -> dict[IPNet, str]:
    return {b.cidr: b.node for pool in ipam.pools() for b, _ in ipam.blocks(pool.name)}


@dataclass
class Reconcile:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def apply(host: Rtnl, want: dict[IPNet, IPAddr]) -> Reconcile:
    """Make podnet's routes in the main table exactly `want`; a next hop that is not on a
    directly connected network is refused (host-gw needs L2 adjacency) and logged."""
    r = Reconcile()
    have = {(e.dst, e.gw) for fam in (4, 6) for e in host.routes(fam) if e.proto == PODNET_PROTO}
    connected = [e.dst for fam in (4, 6) for e in host.routes(fam) if e.gw is None and e.dst.prefixlen > 0
                 and e.proto != PODNET_PROTO]
    for dst, gw in sorted(want.items(), key=lambda x: str(x[0])):
        if (dst, gw) in have:
            continue
        if not any(gw in net for net in connected):
            r.refused.append(f"{dst} via {gw}: next hop not on a directly connected network")
            continue
        try:
            host.add_route(dst, gw=gw, replace=True, proto=PODNET_PROTO)
            r.added.append(f"{dst} via {gw}")
        except NetError as e:
            r.refused.append(f"{dst} via {gw}: {e}")
    for dst, gw in have:
        if want.get(dst) != gw:  # the block left, its node died, or it moved (then replaced above)
            try:
                host.del_route(dst, gw=gw)
                r.removed.append(f"{dst} via {gw}")
            except NetError:
                pass
    return r


class HostGw:
    """Keeps this node registered (lease + keep-alive) and its cross-node routes reconciled."""

    def __init__(self, ipam: ClusterIpam, underlay_addr: IPAddr, ttl: int = 10, interval: float = 1.0,
                 on_pass: Callable[[Reconcile], None] | None = None) -> None:
        self.ipam = ipam
        self.addr = underlay_addr
        self.ttl = ttl
        self.interval = interval
        self.on_pass = on_pass
        self.lease = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.lease = self.ipam.register(self.ttl, {"addr": str(self.addr)})
        self._thread = threading.Thread(target=self._loop, name="podnet-routing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling; routes stay (pods keep working while the agent restarts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def reconcile_once(self) -> Reconcile:
        want = desired_routes(self.ipam.node, node_addresses(self.ipam), block_owners(self.ipam))
        with open_rtnl() as host:
            return apply(host, want)

    def _loop(self) -> None:
        last_keepalive = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_keepalive >= self.ttl / 3:
                    self.ipam.kv.keep_alive(self.lease)  # type: ignore[attr-defined]
                    last_keepalive = now
                    if self.ipam.kv.get(self.ipam.node_key(self.ipam.node)) is None:
                        log.warning("our lease expired (agent stalled?): registering again")
                        self.lease = self.ipam.register(self.ttl, {"addr": str(self.addr)})
                result = self.reconcile_once()
                if result.added or result.removed or result.refused:
                    log.info("routes: +%s -%s refused %s", result.added, result.removed, result.refused)
                if self.on_pass:
                    self.on_pass(result)
            except Exception as e:  # noqa: BLE001 - etcd or netlink trouble: log, try again next pass
                log.warning("routing pass failed: %s", e)
            self._stop.wait(self.interval)
