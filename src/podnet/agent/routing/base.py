"""What a routing backend is: the answer to one question — "the set of remote nodes and the
pod CIDRs they own changed: make this node's kernel match" — plus what it publishes about its
own node for the others (a VTEP MAC, a BGP AS, a WireGuard key).

The reconcile loop (routing/loop.py) owns the when (events, resyncs, the periodic pass); a
backend owns the how.  A new backend is a new module and an entry in BACKENDS: the loop never
tests a backend's name.  A backend's kernel state carries podnet's route protocol
(PODNET_PROTO), so it never touches a route somebody else made, and it stays when the agent
stops (pods keep their traffic while the agent restarts).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ...net.errors import NetError
from ...net.rtnl import PODNET_PROTO, RTN_BLACKHOLE, RTN_UNREACHABLE, RouteEntry, Rtnl

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
NodeInfo = dict[str, str]      # what a node published: "addr", "backend", and backend data


@dataclass(frozen=True)
class NodeIdentity:
    """This node as its backend needs to know it."""
    name: str
    addr: IPAddr               # the underlay address other nodes send pod traffic to


@dataclass
class Reconcile:
    """What one pass changed (for the log, metrics and tests)."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.refused)


class Backend(Protocol):
    name: str

    def start(self, host: Rtnl) -> None:
        """Make what the backend needs once (a device, a child process); idempotent."""

    def publish(self) -> dict[str, str]:
        """Backend data other nodes need about this one (merged into the node's record)."""

    def apply(self, host: Rtnl, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> Reconcile:
        """Make the kernel route every pod CIDR of another live node (`owners`: CIDR → node;
        `nodes`: live node → what it published), and nothing else of podnet's."""

    def pod_mtu(self, host: Rtnl) -> int:
        """The MTU pods must use (0: the default, no encapsulation)."""

    def stop(self) -> None:
        """The agent is stopping: leave routes and devices in place."""


def node_addresses(info: NodeInfo) -> dict[int, IPAddr]:
    """A node's underlay addresses by family: its `addr`, and on a dual-stack underlay the other
    family's (`addr6` or `addr4`: the Node's second InternalIP)."""
    out: dict[int, IPAddr] = {}
    for key in ("addr", "addr4", "addr6"):
        try:
            ip = ipaddress.ip_address(info[key])
        except (KeyError, ValueError):
            continue
        out.setdefault(ip.version, ip)
    return out


def remote_next_hops(me: str, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> dict[IPNet, IPAddr]:
    """pod CIDR → the owning node's underlay address of the CIDR's family, for CIDRs of other live
    nodes that have one (a dual-stack cluster's IPv6 pod CIDRs go via the nodes' IPv6 addresses)."""
    addrs = {name: node_addresses(info) for name, info in nodes.items()}
    return {cidr: addrs[node][cidr.version] for cidr, node in owners.items()
            if node and node != me and node in addrs and cidr.version in addrs[node]}


ENCRYPTION_KEY = "wg_pubkey"     # a node record with this key sends and accepts pod traffic only encrypted


def encryption_mismatches(me: str, encrypts: bool, nodes: dict[str, NodeInfo]) -> dict[str, str]:
    """node → why this node must not exchange pod traffic with it: one side encrypts and the
    other does not.  Such a node's CIDRs get an unreachable route (never plaintext on the wire,
    never the node's default route), and the reason is in every pass's `refused`."""
    out = {}
    for name, info in nodes.items():
        if name == me or bool(info.get(ENCRYPTION_KEY)) == encrypts:
            continue
        out[name] = (f"node {name} does not encrypt pod traffic and this node does (WireGuard): unreachable, "
                     "not plaintext" if encrypts else
                     f"node {name} encrypts pod traffic (WireGuard) and this node does not: unreachable, "
                     "not plaintext")
    return out


Hop = IPAddr | str     # a next hop's address, or DEVICE (straight into the backend's device), UNREACHABLE, BLACKHOLE
DEVICE = "device"
UNREACHABLE = "unreachable"
BLACKHOLE = "blackhole"    # this node's own pod CIDR (BGP): an address in it no pod holds goes nowhere, not back out


def hop_of(e: RouteEntry) -> Hop:
    if e.kind == RTN_UNREACHABLE:
        return UNREACHABLE
    if e.kind == RTN_BLACKHOLE:
        return BLACKHOLE
    return e.gw if e.gw is not None else DEVICE


def podnet_routes(host: Rtnl, families: Iterable[int] = (4, 6)) -> set[tuple[IPNet, Hop]]:
    """(dst, hop) of every route podnet made in the main table."""
    return {(e.dst, hop_of(e)) for fam in families for e in host.routes(fam) if e.proto == PODNET_PROTO}


class Families:
    """The address families a backend's passes look at: those of the cluster's pod CIDRs and node
    addresses, and any seen before (so a family's last routes still get removed); both on the
    first pass (what a previous run left is cleaned whatever the cluster uses now).  A node's main
    table holds a route per local pod and an fe80::/64 per veth; dumping a family nobody uses
    was half of an idle pass."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.first = True

    def update(self, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> tuple[int, ...]:
        self.seen |= {c.version for c in owners}
        for info in nodes.values():
            self.seen |= set(node_addresses(info))
        if self.first:
            self.first = False
            return (4, 6)
        return tuple(sorted(self.seen))


AddRoute = Callable[[IPNet, Hop], None]
Refuse = Callable[[IPNet, Hop], str]


def unreachable_for(mismatched: dict[str, str], owners: dict[IPNet, str]) -> dict[IPNet, str]:
    """CIDR → reason, for the CIDRs of nodes this node must not exchange traffic with."""
    return {cidr: mismatched[node] for cidr, node in owners.items() if node in mismatched}


def sync_routes(host: Rtnl, want: dict[IPNet, Hop], add: AddRoute, refuse: Refuse | None = None,
                have: set[tuple[IPNet, Hop]] | None = None, why: dict[IPNet, str] | None = None) -> Reconcile:
    """Make podnet's routes exactly `want` (dst → hop): `add` the missing ones (unless `refuse`
    gives a reason; an UNREACHABLE hop is made here, and `why` gives its reason for the pass's
    `refused`), then delete the ones no longer wanted — the block left, its node died, or a hop
    it should have could not be made.  Every add replaces, so a route whose hop changed is
    rewritten in place (deleting the old one afterwards would delete the new).  `have`: podnet's
    routes now, if the caller already dumped them."""
    r = Reconcile()
    if have is None:
        have = podnet_routes(host)
    written: set[IPNet] = set()
    for dst, hop in sorted(want.items(), key=lambda x: str(x[0])):
        if hop == UNREACHABLE:
            r.refused.append(f"{dst}: {(why or {}).get(dst, 'unreachable')}")
        if (dst, hop) in have:
            written.add(dst)
            continue
        reason = refuse(dst, hop) if refuse and hop not in (UNREACHABLE, BLACKHOLE) else ""
        if reason:
            r.refused.append(f"{dst} via {hop}: {reason}")
            continue
        try:
            if hop in (UNREACHABLE, BLACKHOLE):
                host.add_route(dst, kind=RTN_UNREACHABLE if hop == UNREACHABLE else RTN_BLACKHOLE, replace=True,
                               proto=PODNET_PROTO)
            else:
                add(dst, hop)
            written.add(dst)
            r.added.append(f"{dst} {hop if isinstance(hop, str) else f'via {hop}'}")
        except NetError as e:
            r.refused.append(f"{dst} via {hop}: {e}")
    for dst, old in have:
        if dst in written:
            continue
        try:
            host.del_route(dst, gw=old if not isinstance(old, str) else None)
            r.removed.append(f"{dst} {old if isinstance(old, str) else f'via {old}'}")
        except NetError:
            pass
    return r
