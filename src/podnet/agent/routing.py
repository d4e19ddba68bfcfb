"""Cross-node routes.  host-gw: every block another live node owns is routed via that node's
underlay address (needs L2 adjacency).  vxlan: the same routes, but through one VXLAN device
per node (onlink via the remote node's address, with a permanent neighbour entry for the
remote VTEP's MAC and an FDB entry sending that MAC to the remote node).  The datastore is
the source of truth (agent/peers.py: etcd's nodes and blocks, or Kubernetes Node objects);
this module only makes the kernel agree with it.

Routes podnet owns carry rtnetlink protocol PODNET_PROTO, so reconciling never touches a
route somebody else made, and a route deleted by hand comes back on the next pass.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..net.errors import NetError
from ..net.rtnl import PODNET_PROTO, Rtnl, open_rtnl, watch_podnet_state
from .peers import Peers

log = logging.getLogger(__name__)

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def desired_routes(me: str, nodes: dict[str, IPAddr], owners: dict[IPNet, str]) -> dict[IPNet, IPAddr]:
    """block → next hop, for blocks affine to other live nodes of the same address family."""
    return {cidr: nodes[node] for cidr, node in owners.items()
            if node and node != me and node in nodes and nodes[node].version == cidr.version}


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
    _drop_stale(host, have, want, r)
    return r


def _drop_stale(host: Rtnl, have: set[tuple[IPNet, IPAddr | None]], want: dict[IPNet, IPAddr], r: Reconcile) -> None:
    """Delete podnet's routes that are no longer wanted: the block left, its node died, or it
    moved to another next hop (then the new route already replaced it)."""
    for dst, gw in have:
        if want.get(dst) != gw:
            try:
                host.del_route(dst, gw=gw)
                r.removed.append(f"{dst} via {gw}")
            except NetError:
                pass


VXLAN_DEV = "podnet.1"
VXLAN_OVERHEAD = 50


def vtep_mac(node: str) -> str:
    """A stable, locally administered MAC per node name (the same after an agent restart)."""
    import hashlib
    b = bytearray(hashlib.sha256(node.encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


class Vxlan:
    """The node's VXLAN device and the per-remote-node neighbour, FDB and route entries."""

    def __init__(self, node: str, addr: IPAddr, vni: int = 1, port: int = 8472) -> None:
        self.node, self.addr, self.vni, self.port = node, addr, vni, port
        self.mac = vtep_mac(node)

    def ensure_device(self, host: Rtnl) -> int:
        dev = host.link(VXLAN_DEV)
        if dev is None:
            under = next((lk for lk in host.links() if self.addr in {a.ip for a in host.addrs(lk.index)}), None)
            if under is None:
                raise NetError(f"no interface holds the underlay address {self.addr}")
            host.add_link(VXLAN_DEV, "vxlan", vxlan_id=self.vni, vxlan_local=str(self.addr), vxlan_port=self.port,
                          vxlan_learning=0, vxlan_link=under.index, mtu=under.mtu - VXLAN_OVERHEAD, address=self.mac)
            dev = host.require_link(VXLAN_DEV)
        if not dev.up:
            host.set_link(dev.index, state="up")
        return dev.index

    def apply(self, host: Rtnl, infos: dict[str, dict[str, str]], owners: dict[IPNet, str]) -> Reconcile:
        r = Reconcile()
        idx = self.ensure_device(host)
        remote = {n: (ipaddress.ip_address(i["addr"]), i.get("vtep_mac", "")) for n, i in infos.items()
                  if n != self.node and i.get("vtep_mac")}
        for node, (addr, mac) in remote.items():
            host.set_neigh(idx, addr, mac)
            host.set_fdb(idx, mac, addr)
        keep_neigh = {str(a) for a, _ in remote.values()}
        for ip, _ in host.neighbours(idx).items():
            if ip not in keep_neigh:
                try:
                    host.del_neigh(idx, ipaddress.ip_address(ip))
                except NetError:
                    pass
        keep_fdb = {(m, str(a)) for a, m in remote.values()}
        for mac, dst in host.fdb_entries(idx) - keep_fdb:
            try:
                host.del_fdb(idx, mac, ipaddress.ip_address(dst))
            except NetError:
                pass
        want = {cidr: remote[n][0] for cidr, n in owners.items() if n in remote and remote[n][0].version == cidr.version}
        have = {(e.dst, e.gw) for fam in (4, 6) for e in host.routes(fam) if e.proto == PODNET_PROTO}
        for dst, gw in want.items():
            if (dst, gw) not in have:
                try:
                    host.add_route(dst, gw=gw, oif=idx, onlink=True, replace=True, proto=PODNET_PROTO)
                    r.added.append(f"{dst} via {gw} dev {VXLAN_DEV}")
                except NetError as e:
                    r.refused.append(f"{dst}: {e}")
        _drop_stale(host, have, want, r)
        return r


class RoutingAgent:
    """Keeps this node announced in the datastore and its cross-node routes reconciled, with
    the host-gw or the vxlan backend.

    A pass runs on every change the datastore reports that moves a route (a node joined or
    left, a pod CIDR claimed or released: converges in well under a second), after its watch
    is (re)established (a full resync: events may have been missed), every `interval` seconds
    regardless, and when netlink reports one of podnet's routes or neighbour entries deleted
    (by hand, or by a link going away), so it comes back at once."""

    COALESCE = 0.02     # a burst of events (pods starting) becomes one pass

    def __init__(self, peers: Peers, underlay_addr: IPAddr, backend: str = "host-gw", heartbeat: float = 3.0,
                 interval: float = 1.0, vni: int = 1, port: int = 8472,
                 on_pass: Callable[[Reconcile], None] | None = None,
                 on_ready: Callable[["RoutingAgent"], None] | None = None,
                 prepare: Callable[[], None] | None = None,
                 on_fail: Callable[[str], None] | None = None) -> None:
        self.peers = peers
        self.on_fail = on_fail               # told why a pass failed (readiness shows it until ready)
        self.addr = underlay_addr
        self.backend = backend
        self.vxlan = Vxlan(peers.node, underlay_addr, vni, port) if backend == "vxlan" else None
        self.heartbeat = heartbeat
        self.interval = interval
        self.on_pass = on_pass
        self.on_ready = on_ready
        self.prepare = prepare               # run (and retried) before joining, e.g. claim a subnet
        self.joined = False
        self.ready = threading.Event()       # joined and one full pass done
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._unwatch: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    def info(self) -> dict[str, str]:
        out = {"addr": str(self.addr), "backend": self.backend}
        if self.vxlan is not None:
            out["vtep_mac"] = self.vxlan.mac
        return out

    def pod_mtu(self) -> int:
        """The MTU pods must use: the VXLAN device's (underlay − 50); 0 (the default) on host-gw."""
        if self.vxlan is None:
            return 0
        with open_rtnl() as host:
            dev = host.link(VXLAN_DEV)
            return dev.mtu if dev is not None else 0

    def start(self) -> None:
        if self.vxlan is not None:
            with open_rtnl() as host:
                self.vxlan.ensure_device(host)
        self._unwatch.append(self.peers.watch(self._wake.set))
        self._unwatch.append(watch_podnet_state(self._wake.set))
        self._thread = threading.Thread(target=self._loop, name="podnet-routing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling; routes stay (pods keep working while the agent restarts)."""
        self._stop.set()
        self._wake.set()
        for unwatch in self._unwatch:
            unwatch()
        if self._thread is not None:
            self._thread.join(5)

    def reconcile_once(self) -> Reconcile:
        owners = self.peers.owners()
        infos = self.peers.nodes()
        with open_rtnl() as host:
            if self.vxlan is not None:
                return self.vxlan.apply(host, infos, owners)
            nodes = {n: ipaddress.ip_address(i["addr"]) for n, i in infos.items()}
            return apply(host, desired_routes(self.peers.node, nodes, owners))

    def _loop(self) -> None:
        """The datastore may be down when the agent starts: it keeps serving CNI requests (DEL
        must work) and retries here; the node only becomes ready once it has joined."""
        last_heartbeat = last_housekeeping = time.monotonic()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if not self.joined:
                    if self.prepare:
                        self.prepare()
                    self.peers.join(self.info())
                    self.joined = True
                    last_heartbeat = now
                elif now - last_heartbeat >= self.heartbeat:
                    self.peers.heartbeat()
                    last_heartbeat = now
                if now - last_housekeeping >= self.interval:
                    last_housekeeping = now
                    self.peers.housekeeping()
                result = self.reconcile_once()
                if result.added or result.removed or result.refused:
                    log.info("routes: +%s -%s refused %s", result.added, result.removed, result.refused)
                if self.on_pass:
                    self.on_pass(result)
                if not self.ready.is_set():
                    self.ready.set()
                    if self.on_ready:
                        self.on_ready(self)
            except Exception as e:  # noqa: BLE001 - datastore or netlink trouble: log, try again next pass
                log.warning("routing pass failed: %s", e)
                if self.on_fail and not self.ready.is_set():
                    self.on_fail(str(e))
            until_heartbeat = max(0.0, self.heartbeat - (time.monotonic() - last_heartbeat))
            if self._wake.wait(min(self.interval, until_heartbeat)):
                self._stop.wait(self.COALESCE)
                self._wake.clear()
