"""Fakes for the routing layer's unit tests (no root, no kernel): a host whose routing table,
links, neighbours and FDB are plain Python state with the netlink calls the backends use, and a
`Peers` datastore held in memory.  The real ones are net/rtnl.Rtnl and agent/peers.py; the
cluster tier runs those."""
from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable, Iterator
from typing import Any

from podnet.net.errors import NetError
from podnet.net.rtnl import Link, RouteEntry

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class FakeHost:
    def __init__(self, underlay: str = "10.97.0.1/24", mtu: int = 1500) -> None:
        iface = ipaddress.ip_interface(underlay)
        self._links: dict[str, Link] = {"up0": Link(2, "up0", "veth", "02:00:00:00:00:01", mtu, True, 0, "", 0, False)}
        self._addrs: dict[int, list[Any]] = {2: [iface]}
        self.table: dict[IPNet, RouteEntry] = {iface.network: RouteEntry(iface.network, None, 2, 253, 254, 0, 2)}
        self.neigh: dict[int, dict[str, str]] = {}
        self.fdb: dict[int, set[tuple[str, str]]] = {}
        self.calls: list[str] = []
        self.dumps: list[int] = []          # the families of each route dump, in order
        self.fail_routes: set[str] = set()       # destinations whose add fails (a netlink error)

    # links
    def link(self, name: str) -> Link | None:
        return self._links.get(name)

    def links(self) -> list[Link]:
        return list(self._links.values())

    def link_holding(self, ip: IPAddr) -> Link | None:
        return next((lk for lk in self._links.values() if ip in {a.ip for a in self.addrs(lk.index)}), None)

    def require_link(self, name: str) -> Link:
        lk = self.link(name)
        if lk is None:
            raise NetError(f"no link {name}")
        return lk

    def addrs(self, index: int, family: int | None = None) -> list[Any]:
        return self._addrs.get(index, [])

    def add_link(self, name: str, kind: str, netns_fd: int | None = None, **attrs: Any) -> None:
        self.calls.append(f"add_link {name} {kind}")
        index = max(lk.index for lk in self._links.values()) + 1
        self._links[name] = Link(index, name, kind, attrs.get("address", ""), attrs.get("mtu", 1500), False, 0, "",
                                 attrs.get("vxlan_link", 0), False, tuple(sorted(attrs.items())))

    def set_link(self, index: int, **attrs: Any) -> None:
        for name, lk in self._links.items():
            if lk.index == index and attrs.get("state") == "up":
                self._links[name] = Link(**{**lk.__dict__, "up": True})

    # routes
    def routes(self, family: int, table: int | None = 254) -> list[RouteEntry]:
        self.dumps.append(family)
        return [r for r in self.table.values() if r.dst.version == family]

    def add_route(self, dst: IPNet, gw: IPAddr | None = None, oif: int = 0, replace: bool = False, proto: int = 0,
                  onlink: bool = False, kind: int = 1, **_: Any) -> None:
        if str(dst) in self.fail_routes:
            raise NetError(f"route {dst}: Network is unreachable")
        if dst in self.table and not replace:
            raise NetError(f"route {dst} exists")
        self.calls.append(f"add {dst} via {gw}{' onlink' if onlink else ''}" if kind == 1 else f"add {dst} type {kind}")
        self.table[dst] = RouteEntry(dst, gw, oif, 0, 254, 0, proto, kind)

    def del_route(self, dst: IPNet, gw: IPAddr | None = None, oif: int = 0, table: int | None = None) -> None:
        """As the kernel: a gateway given must match (a route replaced meanwhile is not deleted)."""
        have = self.table.get(dst)
        if have is None or (gw is not None and have.gw != gw):
            raise NetError(f"route {dst} via {gw}: No such process")
        self.calls.append(f"del {dst} via {gw}")
        del self.table[dst]

    def podnet_routes(self) -> dict[str, str]:
        """dst → next hop, or "unreachable"."""
        from podnet.net.rtnl import PODNET_PROTO, RTN_UNREACHABLE
        return {str(r.dst): "unreachable" if r.kind == RTN_UNREACHABLE else str(r.gw)
                for r in self.table.values() if r.proto == PODNET_PROTO}

    # neighbours and FDB (vxlan)
    def set_neigh(self, index: int, ip: IPAddr, mac: str) -> None:
        self.calls.append(f"neigh {ip} {mac}")
        self.neigh.setdefault(index, {})[str(ip)] = mac

    def del_neigh(self, index: int, ip: IPAddr) -> None:
        self.neigh.get(index, {}).pop(str(ip), None)

    def neighbours(self, index: int) -> dict[str, str]:
        return dict(self.neigh.get(index, {}))

    def set_fdb(self, index: int, mac: str, dst: IPAddr) -> None:
        self.calls.append(f"fdb {mac} {dst}")
        self.fdb.setdefault(index, set()).add((mac, str(dst)))

    def del_fdb(self, index: int, mac: str, dst: IPAddr) -> None:
        self.fdb.get(index, set()).discard((mac, str(dst)))

    def fdb_entries(self, index: int) -> set[tuple[str, str]]:
        return set(self.fdb.get(index, set()))

    def opener(self) -> Callable[[], contextlib.AbstractContextManager[FakeHost]]:
        """What RoutingAgent takes as `host`: a context manager giving this host."""
        @contextlib.contextmanager
        def opened() -> Iterator[FakeHost]:
            yield self
        return opened


class FakePeers:
    """A datastore in memory: the test sets nodes and owners; watchers are woken on change."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.infos: dict[str, dict[str, str]] = {}
        self.owner: dict[IPNet, str] = {}
        self.pending: set[str] = set()
        self.joined: list[dict[str, str]] = []
        self.heartbeats = 0
        self.housekeeping_runs = 0
        self.fail_join = 0                      # the next N joins raise (datastore down)
        self._wakes: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def join(self, info: dict[str, str]) -> None:
        if self.fail_join:
            self.fail_join -= 1
            raise ConnectionError("datastore unreachable")
        self.joined.append(info)
        self.infos[self.node] = {"node": self.node, **info}

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def housekeeping(self) -> None:
        self.housekeeping_runs += 1

    def nodes(self) -> dict[str, dict[str, str]]:
        with self.lock:
            return {k: dict(v) for k, v in self.infos.items()}

    def owners(self) -> dict[IPNet, str]:
        with self.lock:
            return dict(self.owner)

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._wakes.append(wake)
        return lambda: self._wakes.remove(wake)

    def requests(self) -> list[str]:
        return sorted(self.pending)

    def request_done(self, name: str) -> None:
        self.pending.discard(name)

    # the test's side
    def ask(self, what: str) -> None:
        self.pending.add(what)
        self._fire()

    def set_node(self, name: str, addr: str, **extra: str) -> None:
        with self.lock:
            self.infos[name] = {"node": name, "addr": addr, **extra}
        self._fire()

    def drop_node(self, name: str) -> None:
        with self.lock:
            self.infos.pop(name, None)
        self._fire()

    def own(self, cidr: str, node: str) -> None:
        with self.lock:
            self.owner[ipaddress.ip_network(cidr)] = node
        self._fire()

    def _fire(self) -> None:
        for wake in list(self._wakes):
            wake()
