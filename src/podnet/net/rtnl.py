"""The netlink facade (with nlraw.py, the only place pyroute2 is imported besides tc and conntrack): speaks our types.

Upper layers see `Link` records and ipaddress objects, and `NetError` subclasses
instead of NetlinkError.  A `Rtnl` is bound to the netns it was opened in.
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute  # pinned in pyproject: pyroute2==0.9.7
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_NEIGH

from . import netns
from .errors import LinkExists, LinkKindUnsupported, LinkNotFound, NetError
from .nlraw import Link as Link  # re-exported: the facade's link record
from .nlraw import RawRtnl, link_from_bytes, link_from_msg, parse_link

log = logging.getLogger(__name__)

IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255
NUD_PERMANENT = 0x80
NTF_SELF = 0x02       # an FDB entry of the device itself (VXLAN), not of a bridge master
RTNH_F_ONLINK = 4
PODNET_PROTO = 151   # marks the routes podnet's agent owns (cross-node routes), so it touches no other
RTN_UNICAST = 1
RTN_BLACKHOLE = 6    # a route that drops silently: a node's own pod CIDR under its pods' /32 routes
RTN_UNREACHABLE = 7  # a route that answers "network unreachable": traffic that must not leave at all


@dataclass(frozen=True)
class RouteEntry:
    dst: IPNet
    gw: IPAddr | None
    oif: int
    scope: int
    table: int
    priority: int
    proto: int = 0     # rtnetlink protocol: who made the route (podnet's own: PODNET_PROTO)
    kind: int = RTN_UNICAST   # rtnetlink route type (RTN_UNREACHABLE…)


@dataclass(frozen=True)
class RouteLookup:
    """A route lookup's answer: kind unicast | local | blackhole | unreachable | prohibit | error."""
    kind: str
    oif: int = 0
    gw: IPAddr | None = None
    table: int = 0
    error: str = ""


def _translate(e: NetlinkError, what: str) -> NetError:
    if e.code == errno.ENODEV:
        return LinkNotFound(what)
    if e.code == errno.EEXIST:
        return LinkExists(what)
    if e.code == errno.EOPNOTSUPP:
        return LinkKindUnsupported(f"{what}: this kernel does not support the link type")
    return NetError(f"{what}: {e.args[1] if len(e.args) > 1 else e}")


@contextlib.contextmanager
def _nl(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as e:
        raise _translate(e, what) from e


# IFLA_EXT_MASK bit: no counters in a link reply (a third of its bytes; nobody here reads them)
RTEXT_FILTER_SKIP_STATS = 1 << 3
RTM_F_FIB_MATCH = 0x2000     # a route lookup answers with the matched route (its prefix), not the result


class Rtnl:
    """A netlink route socket in one netns.  Not thread-safe: one per thread/request."""

    def __init__(self, netns_fd: int) -> None:
        """netns_fd: an fd of the netns this Rtnl works in (owned: closed with it).  Requests
        with one answer go over a plain socket (nlraw); pyroute2's IPRoute, needed only for dumps
        and tc, is opened on first use (~0.7 ms saved for a netns that never needs it)."""
        self._netns_fd = netns_fd
        with netns.entered(netns_fd):
            self._raw = RawRtnl()
        self._ipr_obj: IPRoute | None = None

    def close(self) -> None:
        self._raw.close()
        if self._ipr_obj is not None:
            self._ipr_obj.close()
        os.close(self._netns_fd)

    @property
    def _ipr(self) -> IPRoute:
        if self._ipr_obj is None:
            with netns.entered(self._netns_fd):
                self._ipr_obj = IPRoute()
        return self._ipr_obj

    @property
    def ipr(self) -> IPRoute:
        """The pyroute2 handle, for the other netlink modules of net/ (tc) to share the socket."""
        return self._ipr

    def raw_request(self, kind: str, command: str, /, **kw: Any) -> list[Any]:
        """A single-answer request on the plain socket (nlraw.KINDS), for net/'s other modules (tc)."""
        return self._raw.request(kind, command, **kw)

    def _get(self, kind: str, /, **kw: Any) -> Any:
        """A netlink 'get' (one object, not a dump)."""
        return self._raw.request(kind, "get", **kw)

    # ------------------------------------------------------------- links
    def link(self, name: str) -> Link | None:
        try:
            chunks = self._raw.request_bytes("link", "get", ifname=name, ext_mask=RTEXT_FILTER_SKIP_STATS)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise _translate(e, f"link {name}") from e
        return link_from_bytes(chunks[0])

    def link_by_index(self, index: int) -> Link | None:
        try:
            chunks = self._raw.request_bytes("link", "get", index=index, ext_mask=RTEXT_FILTER_SKIP_STATS)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise _translate(e, f"link #{index}") from e
        return link_from_bytes(chunks[0])

    def links(self) -> list[Link]:
        return [link_from_msg(m) for m in self._ipr.get_links()]

    def link_holding(self, ip: IPAddr) -> Link | None:
        """The link that holds address `ip` (a node's underlay interface), None if none does."""
        return next((lk for lk in self.links() if ip in {a.ip for a in self.addrs(lk.index)}), None)

    def require_link(self, name: str) -> Link:
        link = self.link(name)
        if link is None:
            raise LinkNotFound(name)
        return link

    def add_bridge(self, name: str, mtu: int = 0, vlan_filtering: bool = False, mac: str = "") -> None:
        kw: dict[str, Any] = {"ifname": name, "kind": "bridge"}
        if mac:
            kw["address"] = mac
        if mtu:
            kw["mtu"] = mtu
        if vlan_filtering:
            kw["br_vlan_filtering"] = 1
        with _nl(f"bridge {name}"):
            self.raw_request("link", "add", **kw)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int = 0, peer_mac: str = "",
                 mac: str = "", master: int = 0, up: bool = False) -> None:
        """One message: both ends, the peer already in its netns, optionally enslaved and up."""
        peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": peer_netns_fd}
        if peer_mac:
            peer_spec["address"] = peer_mac
        if up:
            peer_spec["flags"] = 1
        kw: dict[str, Any] = {"ifname": name, "kind": "veth", "peer": peer_spec}
        if mac:
            kw["address"] = mac
        if master:
            kw["master"] = master
        if up:
            kw["state"] = "up"
        if mtu:
            kw["mtu"] = mtu
            peer_spec["mtu"] = mtu
        with _nl(f"veth {name}"):
            self.raw_request("link", "add", **kw)

    def add_link(self, name: str, kind: str, netns_fd: int | None = None, **attrs: Any) -> None:
        """A link of `kind` (macvlan, ipvlan, vlan, dummy…), created straight into `netns_fd`
        if given; attrs are pyroute2's: link (lower index), mtu, address, macvlan_mode…"""
        kw: dict[str, Any] = {"ifname": name, "kind": kind, **{k: v for k, v in attrs.items() if v is not None}}
        if netns_fd is not None:
            kw["net_ns_fd"] = netns_fd
        with _nl(f"{kind} {name}"):
            self.raw_request("link", "add", **kw)

    def set_link(self, index: int, **attrs: Any) -> None:
        """attrs: state='up', mtu, address, master, ifname, net_ns_fd, ifalias, flags…"""
        with _nl(f"link #{index}"):
            self.raw_request("link", "set", index=index, **attrs)

    def set_promisc(self, index: int, on: bool) -> None:
        self.set_flag(index, 0x100, on)

    def set_flag(self, index: int, flag: int, on: bool) -> None:
        """One IFF_* flag (0x100 promisc, 0x200 allmulti), leaving the others alone."""
        with _nl(f"link #{index}"):
            self.raw_request("link", "set", index=index, flags=flag if on else 0, change=flag)

    def del_link(self, index: int) -> None:
        with _nl(f"link #{index}"):
            self.raw_request("link", "del", index=index)

    def del_group(self, group: int) -> None:
        """Delete every link of IFLA_GROUP `group` in this netns in one kernel batch."""
        with _nl(f"link group {group}"):
            self.raw_request("link", "del", group=group)

    def set_brport(self, index: int, **attrs: Any) -> None:
        with _nl(f"bridge port #{index}"):
            # as IPRoute.brport("set") sends it: a link change of kind bridge_slave
            self.raw_request("link", "set", index=index, kind="bridge_slave", **attrs)

    def add_bridge_vlan(self, index: int, vid: int, pvid: bool = True, untagged: bool = True) -> None:
        flags = (2 if pvid else 0) | (4 if untagged else 0)
        with _nl(f"vlan {vid} on #{index}"):
            self._ipr.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags})

    # --------------------------------------------------------- addresses
    def addrs(self, index: int, family: int | None = None) -> list[IPIface]:
        out: list[IPIface] = []
        fam = 0 if not family else socket.AF_INET if family == 4 else socket.AF_INET6
        for m in self._raw.dump_addrs(fam):
            if m["index"] == index:
                out.append(ipaddress.ip_interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"))
        return out

    def add_addr(self, index: int, iface: IPIface, nodad: bool = False) -> None:
        kw: dict[str, Any] = {"flags": IFA_F_NODAD} if nodad and iface.version == 6 else {}
        with _nl(f"address {iface}"):
            try:
                self.raw_request("addr", "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kw)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise

    def del_addr(self, index: int, iface: IPIface) -> None:
        with _nl(f"address {iface}"):
            self.raw_request("addr", "del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)

    # ------------------------------------------------------------ routes
    def routes(self, family: int, table: int | None = 254) -> list[RouteEntry]:
        """Routes of one table (None: every table, local and policy tables included)."""
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        out = []
        kw: dict[str, Any] = {"family": fam} if table is None else {"family": fam, "table": table}
        for m in self._ipr.get_routes(**kw):
            dst = m.get("RTA_DST")
            plen = m["dst_len"]
            net = ipaddress.ip_network(f"{dst}/{plen}" if dst else ("0.0.0.0/0" if family == 4 else "::/0"))
            gw = m.get("RTA_GATEWAY")
            out.append(RouteEntry(net, ipaddress.ip_address(gw) if gw else None, m.get("RTA_OIF") or 0,
                                  m["scope"], m.get("RTA_TABLE") or m["table"], m.get("RTA_PRIORITY") or 0,
                                  m["proto"], m["type"]))
        return out

    def add_route(self, dst: IPNet, gw: IPAddr | None = None, oif: int = 0, scope: int | None = None,
                  table: int | None = None, priority: int = 0, mtu: int = 0, advmss: int = 0,
                  src: IPAddr | None = None, replace: bool = False, proto: int = 0,
                  onlink: bool = False, kind: int = RTN_UNICAST) -> None:
        kw: dict[str, Any] = {"dst": str(dst)}
        if kind != RTN_UNICAST:
            kw["type"] = kind
        if proto:
            kw["proto"] = proto
        if onlink:
            kw["flags"] = RTNH_F_ONLINK
        if gw is not None:
            kw["gateway"] = str(gw)
        if oif:
            kw["oif"] = oif
        if scope is not None:
            kw["scope"] = scope
        if table is not None:
            kw["table"] = table
        if priority:
            kw["priority"] = priority
        if src is not None:
            kw["prefsrc"] = str(src)
        metrics = {}
        if mtu:
            metrics["RTAX_MTU"] = mtu
        if advmss:
            metrics["RTAX_ADVMSS"] = advmss
        if metrics:
            kw["metrics"] = metrics
        with _nl(f"route {dst}"):
            self.raw_request("route", "replace" if replace else "add", **kw)

    # ------------------------------------------------------------- rules
    def rules(self, family: int) -> list[tuple[IPNet | None, int, int]]:
        """(source prefix or None, table, priority) of every policy routing rule."""
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        out = []
        for m in self._ipr.get_rules(family=fam):
            src = m.get("FRA_SRC")
            net = ipaddress.ip_network(f"{src}/{m['src_len']}") if src else None
            out.append((net, m.get("FRA_TABLE") or m["table"], m.get("FRA_PRIORITY") or 0))
        return out

    def add_rule(self, src: IPNet, table: int, priority: int = 0) -> None:
        fam = socket.AF_INET if src.version == 4 else socket.AF_INET6
        kw: dict[str, Any] = {"family": fam, "table": table, "src": str(src.network_address),
                              "src_len": src.prefixlen}
        if priority:
            kw["priority"] = priority
        with _nl(f"rule from {src} table {table}"):
            try:
                self._ipr.rule("add", **kw)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise

    def fwmark_rule(self, action: str, family: int, mark: int, table: int, priority: int) -> None:
        """`ip rule add|del fwmark MARK/MARK lookup TABLE priority P` (the mark's own bits only: other
        software's bits in the same packet do not matter); adding one that exists, or deleting one
        that does not, is fine."""
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        with _nl(f"rule fwmark {mark:#x} table {table}"):
            try:
                self._ipr.rule(action, family=fam, table=table, fwmark=mark, fwmask=mark, priority=priority)
            except NetlinkError as e:
                if e.code not in ((errno.EEXIST,) if action == "add" else (errno.ENOENT, errno.ESRCH)):
                    raise

    def del_rule(self, src: IPNet, table: int) -> None:
        fam = socket.AF_INET if src.version == 4 else socket.AF_INET6
        with _nl(f"rule from {src} table {table}"):
            self._ipr.rule("del", family=fam, table=table, src=str(src.network_address), src_len=src.prefixlen)

    # ------------------------------------------------- neighbours and fdb (VXLAN)
    def set_neigh(self, index: int, ip: IPAddr, mac: str) -> None:
        """A permanent neighbour entry (ip -> mac) on link `index`."""
        with _nl(f"neighbour {ip} on #{index}"):
            self.raw_request("neigh", "replace", ifindex=index, dst=str(ip), lladdr=mac, state=NUD_PERMANENT)

    def del_neigh(self, index: int, ip: IPAddr) -> None:
        with _nl(f"neighbour {ip} on #{index}"):
            self.raw_request("neigh", "del", ifindex=index, dst=str(ip))

    def neighbours(self, index: int) -> dict[str, str]:
        """ip -> mac of the permanent entries on link `index`."""
        out = {}
        for m in self._ipr.get_neighbours(ifindex=index):
            if m["state"] & NUD_PERMANENT and m.get("NDA_DST") and m.get("NDA_LLADDR"):
                out[str(m.get("NDA_DST"))] = str(m.get("NDA_LLADDR"))
        return out

    def set_fdb(self, index: int, mac: str, dst: IPAddr) -> None:
        """VXLAN forwarding entry: frames for `mac` go to the VTEP at `dst`."""
        with _nl(f"fdb {mac} on #{index}"):
            self._ipr.fdb("replace", ifindex=index, lladdr=mac, dst=str(dst), state=NUD_PERMANENT, flags=NTF_SELF)

    def del_fdb(self, index: int, mac: str, dst: IPAddr) -> None:
        with _nl(f"fdb {mac} on #{index}"):
            self._ipr.fdb("del", ifindex=index, lladdr=mac, dst=str(dst), flags=NTF_SELF)

    def fdb_entries(self, index: int) -> set[tuple[str, str]]:
        """(mac, dst) of the link's forwarding entries that have a destination."""
        out = set()
        for m in self._ipr.fdb("dump", ifindex=index):
            if m.get("NDA_DST") and m.get("NDA_LLADDR") and m["ifindex"] == index:
                out.add((str(m.get("NDA_LLADDR")), str(m.get("NDA_DST"))))
        return out

    def route_oif(self, dst: IPAddr) -> int:
        """The ifindex the kernel would send a packet to `dst` out of (0: no route)."""
        with _nl(f"route get {dst}"):
            try:
                msgs = self._get("route", dst=str(dst))
            except NetlinkError as e:
                if e.code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    return 0
                raise
        return int(msgs[0].get("RTA_OIF") or 0) if msgs else 0

    def lookup(self, dst: IPAddr, src: IPAddr | None = None, iif: int = 0) -> RouteLookup:
        """What the kernel decides for a packet to `dst` (from `src`, arriving on `iif` — a
        forwarding decision), as `ip route get` shows it; errors (no route, unreachable) are the
        answer, not exceptions."""
        kw: dict[str, Any] = {"dst": str(dst)}
        if src is not None:
            kw["src"] = str(src)
        if iif:
            kw["iif"] = iif
        try:
            msgs = self._get("route", **kw)
        except NetlinkError as e:
            # the kernel answers a lookup that hits an unreachable route with EHOSTUNREACH
            return RouteLookup("unreachable" if e.code == errno.EHOSTUNREACH else "error", error=os.strerror(e.code))
        if not msgs:
            return RouteLookup("error", error="no answer")
        m = msgs[0]
        kinds = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
        gw = m.get("RTA_GATEWAY")
        return RouteLookup(kinds.get(m["type"], str(m["type"])), oif=int(m.get("RTA_OIF") or 0),
                           gw=ipaddress.ip_address(gw) if gw else None, table=int(m.get("RTA_TABLE") or m["table"]))

    def matched_prefix(self, dst: IPAddr) -> int | None:
        """The prefix length of the route a lookup for `dst` matches (RTM_F_FIB_MATCH): 0 means
        only the default route covers it.  None: no route at all."""
        try:
            msgs = self._get("route", dst=str(dst), flags=RTM_F_FIB_MATCH)
        except NetlinkError:
            return None
        return int(msgs[0]["dst_len"]) if msgs else None

    def peer_netnsid(self, index: int) -> int | None:
        """IFLA_LINK_NETNSID of a link (a veth's peer's netns, as this netns numbers it)."""
        try:
            chunk = self._raw.request_bytes("link", "get", index=index, ext_mask=RTEXT_FILTER_SKIP_STATS)[0]
        except NetlinkError:
            return None
        nsid = parse_link(chunk)["netnsid"]
        return int(nsid) if nsid is not None else None

    def netnsid(self, netns_fd: int) -> int | None:
        """The id this netns gives the netns open at `netns_fd` (None: it has none yet)."""
        try:
            out = self._ipr.get_netnsid(fd=netns_fd)
        except NetlinkError:
            return None
        nsid = out.get("nsid") if isinstance(out, dict) else None
        return int(nsid) if nsid is not None and int(nsid) >= 0 else None

    def del_route(self, dst: IPNet, gw: IPAddr | None = None, oif: int = 0, table: int | None = None) -> None:
        """Delete whatever route matches: any scope and protocol (the kernel's own too)."""
        kw: dict[str, Any] = {"dst": str(dst), "scope": RT_SCOPE_NOWHERE, "proto": 0}
        if gw is not None:
            kw["gateway"] = str(gw)
        if oif:
            kw["oif"] = oif
        if table is not None:
            kw["table"] = table
        with _nl(f"route {dst}"):
            self.raw_request("route", "del", **kw)


_host = threading.local()


def _thread_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def open_rtnl(netns_fd: int | None = None) -> Iterator[Rtnl]:
    """A Rtnl in the netns `netns_fd` (None: the calling thread's own).

    The calling thread's own-netns socket is kept per thread and reused (opening one
    costs ~0.7 ms, a large share of an ADD in the agent); it is keyed by the thread's
    current netns, so a thread that has entered another netns never gets a stale one.
    """
    if netns_fd is None:
        inode = _thread_netns_inode()
        cached: tuple[int, Rtnl] | None = getattr(_host, "rtnl", None)
        if cached is not None and cached[0] == inode:
            yield cached[1]
            return
        r = Rtnl(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        if cached is not None:
            cached[1].close()
        _host.rtnl = (inode, r)
        yield r
        return
    shared: dict[int, Rtnl] | None = getattr(_host, "shared", None)
    key = os.fstat(netns_fd).st_ino if shared is not None else 0
    if shared is not None and key in shared:
        yield shared[key]
        return
    r = Rtnl(os.dup(netns_fd))
    if shared is not None:
        shared[key] = r       # closed when the sharing scope ends
        yield r
        return
    try:
        yield r
    finally:
        r.close()


@contextlib.contextmanager
def sharing_netns_sockets() -> Iterator[None]:
    """Within this scope, open_rtnl(fd) on this thread reuses one socket per netns instead of
    opening (~0.7 ms) and closing one per call — for a request whose steps each visit the same
    pod's netns (the one-exec plugin).  Sockets are keyed by the netns's inode and closed at the
    end; a nested scope shares the outer one's."""
    if getattr(_host, "shared", None) is not None:
        yield
        return
    _host.shared = {}
    try:
        yield
    finally:
        shared, _host.shared = _host.shared, None
        for r in shared.values():
            r.close()


def library_version() -> str:
    """The netlink library's version, for `podnet doctor`."""
    import pyroute2
    return str(getattr(pyroute2, "__version__", "unknown"))


def _watch(name: str, groups: int, wanted: Callable[[list[Any]], bool],
           on_change: Callable[[], None]) -> Callable[[], None]:
    """A thread following rtnetlink multicast `groups` in the calling thread's netns (the new
    thread inherits it), calling on_change() when wanted(messages).  The socket is made and read
    in that thread: pyroute2 0.9's sync socket answers only the thread that made it (made in the
    caller and read in the thread, a watch never heard anything, and repairs waited for the next
    periodic pass).  It reads with blocking get() calls — pyroute2 buffers what one read brings,
    so waiting on the descriptor would sit on messages already received.  Returns once the
    socket is listening; stop() closes it (a thread blocked in get() ends at its next message)."""
    stopped = threading.Event()
    listening = threading.Event()
    current: list[Any] = []

    def run() -> None:
        failures = 0
        while not stopped.is_set():
            try:
                sock = IPRoute()
                sock.bind(groups=groups)
            except Exception as e:  # noqa: BLE001 - retried with a backoff; the periodic pass still runs
                log.warning("netlink watch %s: %s", name, e)
                listening.set()
                stopped.wait(min(5.0, 0.1 * 2 ** min(failures, 6)))
                failures += 1
                continue
            current[:] = [sock]
            if failures:
                on_change()                          # events may have been missed meanwhile
            listening.set()
            try:
                while not stopped.is_set():
                    msgs = sock.get()
                    if not stopped.is_set() and wanted(msgs):
                        on_change()
                failures = 0
            except Exception as e:  # noqa: BLE001 - closed by stop(), or netlink trouble: reopen
                if stopped.is_set():
                    return
                failures += 1
                log.warning("netlink watch %s dropped (%s: %s): reopening; a full reconcile pass follows",
                            name, type(e).__name__, e)
                stopped.wait(min(5.0, 0.1 * 2 ** min(failures - 1, 6)))
            finally:
                with contextlib.suppress(Exception):
                    sock.close()

    def stop() -> None:
        stopped.set()
        for sock in current:
            with contextlib.suppress(Exception):
                sock.close()

    threading.Thread(target=run, name=f"podnet-watch-{name}", daemon=True).start()
    listening.wait(10)
    return stop


def watch_podnet_state(on_change: Callable[[], None]) -> Callable[[], None]:
    """Call on_change() whenever one of podnet's routes (PODNET_PROTO) or a neighbour entry is
    deleted in the calling thread's netns — somebody undid what the agent programmed, so it
    reconciles at once instead of at its next periodic pass.  Returns a stop function."""
    def wanted(msgs: list[Any]) -> bool:
        return any((m.get("event") == "RTM_DELROUTE" and m.get("proto") == PODNET_PROTO)
                   or m.get("event") == "RTM_DELNEIGH" for m in msgs)
    return _watch("podnet-state", RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH, wanted, on_change)


def watch_table(table: int, on_change: Callable[[], None]) -> Callable[[], None]:
    """Call on_change() whenever a route is added to or deleted from kernel table `table` in the
    calling thread's netns (e.g. the table BIRD writes learned routes to).  Returns stop()."""
    def wanted(msgs: list[Any]) -> bool:
        return any((m.get("RTA_TABLE") or m.get("table")) == table for m in msgs)
    return _watch(f"table-{table}", RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE, wanted, on_change)
