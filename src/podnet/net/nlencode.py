"""Our own encoders for the rtnetlink requests on a pod's path: the bytes pyroute2 would build,
built with a few struct packs.

Why: after nlraw took pyroute2's per-request event loop away, its message *encoding* was the
largest part of the agent's netlink time — its generic NLA machinery (name → attribute lookups,
request filters, nested `ft_encode` calls) costs ~0.25 ms a message, and a tbf qdisc's rate
table is computed in Python for every pod.  At K=8 on two cores the agent's CPU per pod is the
throughput limit, so the dozen messages a pod needs are built here directly.

Scope: exactly the shapes the agent sends per pod (link get/set/del, veth and ifb creation,
addresses, routes, neighbours, ingress qdisc, u32 match-all + mirred redirect; tbf from a cache
of pyroute2's own encoding).  `encode()` answers None for anything else, and the caller falls back
to pyroute2 — so a request never changes meaning here: tests/unit/test_nlencode.py holds every
shape byte-for-byte equal to pyroute2's encoding, and tests/kernel/test_nlraw.py to IPRoute's.
The attribute order follows the keywords' order, as pyroute2's does (IFLA_LINKINFO last).
"""
from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_IFINFO = struct.Struct("=BxHiII")       # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")        # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table, proto, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")      # family, ifindex, state, flags, type
_TCMSG = struct.Struct("=BxxxiIII")      # family, ifindex, handle, parent, info
_MIRRED = struct.Struct("=IIiiiiI")      # tc_mirred: index, capab, action, refcnt, bindcnt, eaction, ifindex
NLA_F_NESTED = 0x8000
IFF_UP = 1
TC_H_INGRESS = 0xFFFFFFF1
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1
TC_U32_TERMINAL = 1
RT_TABLE_MAIN = 254   # also what pyroute2 puts in the header for a table past 255 (RTA_TABLE holds it)
RTPROT = {"static": 4}
RTN = {"unicast": 1}


class Unsupported(Exception):
    """A keyword or value this module does not encode: pyroute2 builds the message instead."""


def _attr(nla_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, nla_type) + payload + b"\0" * (-length % 4)


def _uint(value: Any) -> int:
    """`value` when it is an int that fits an unsigned 32-bit field."""
    if type(value) is not int or not 0 <= value < 1 << 32:
        raise Unsupported(value)
    return value


def _u8(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 256:
        raise Unsupported(value)
    return value


def _u32(value: Any) -> bytes:
    return _U32.pack(_uint(value))


def _asciiz(value: Any) -> bytes:
    if not isinstance(value, str):
        raise Unsupported(value)
    return value.encode() + b"\0"


def _mac(value: Any) -> bytes:
    try:
        raw = bytes.fromhex(value.replace(":", "")) if isinstance(value, str) and value.count(":") == 5 else b""
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise Unsupported(value)
    return raw


def _ip(value: Any) -> tuple[int, bytes]:
    """(family, packed address) of an address string."""
    if not isinstance(value, str):
        raise Unsupported(value)
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        return family, socket.inet_pton(family, value)
    except OSError:
        raise Unsupported(value) from None


# ---------------------------------------------------------------------------------------- links
# keyword -> (IFLA_* type, value encoder); the plain attributes a pod's path sets
_LINK_ATTRS: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    "ifname": (3, _asciiz), "address": (1, _mac), "master": (10, _u32), "mtu": (4, _u32),
    "group": (27, _u32), "net_ns_fd": (28, _u32), "ext_mask": (29, _u32)}
IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA, VETH_INFO_PEER = 18, 1, 2, 5, 1
_BRPORT_ATTRS = {"mode": 4}         # IFLA_BRPORT_MODE: hairpin


def _link_attrs(kw: dict[str, Any], skip: tuple[str, ...]) -> bytes:
    out = []
    for key, value in kw.items():
        if key in skip:
            continue
        spec = _LINK_ATTRS.get(key)
        if spec is None:
            raise Unsupported(key)
        out.append(_attr(spec[0], spec[1](value)))
    return b"".join(out)


def _link(command: str, kw: dict[str, Any]) -> bytes:
    index = kw.get("index", 0)
    flags = change = 0
    if "state" in kw:
        if kw["state"] != "up" or "flags" in kw:
            raise Unsupported("state")
        flags = change = IFF_UP
    elif "flags" in kw or "change" in kw:
        flags, change = kw.get("flags", 0), kw.get("change", 0)
    if type(index) is not int or type(flags) is not int or type(change) is not int:
        raise Unsupported("index/flags")
    if command not in ("add", "set", "del", "get"):
        raise Unsupported(command)
    kind = kw.get("kind")
    if kind != "bridge_slave" and any(k in kw for k in _BRPORT_ATTRS):
        raise Unsupported("bridge port option without kind bridge_slave")
    body = _link_attrs(kw, ("index", "state", "flags", "change", "kind", "peer", *_BRPORT_ATTRS))
    if command == "add" and kind in ("veth", "ifb"):
        info = _attr(IFLA_INFO_KIND, _asciiz(kind))
        if kind == "veth":
            peer = kw.get("peer")
            if not isinstance(peer, dict) or not peer.get("ifname"):
                raise Unsupported("peer")
            # pyroute2 sends the peer's ifinfomsg zeroed: a "flags" key there does not reach the kernel
            peer_msg = _IFINFO.pack(0, 0, 0, 0, 0) + _link_attrs(peer, ("flags",))
            info += _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_msg))
        elif "peer" in kw:
            raise Unsupported("peer")
        body += _attr(IFLA_LINKINFO, info)
    elif command == "set" and kind == "bridge_slave" and "peer" not in kw:
        # a bridge port's options (IPRoute.brport): IFLA_INFO_SLAVE_DATA, one byte each
        data = b"".join(_attr(t, struct.pack("=B", _u8(kw[k]))) for k, t in _BRPORT_ATTRS.items() if k in kw)
        body += _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge_slave\0") + _attr(IFLA_INFO_SLAVE_DATA, data))
    elif kind is not None or "peer" in kw:
        raise Unsupported(f"link kind {kind}")
    return _IFINFO.pack(0, 0, index, flags, change) + body


# ------------------------------------------------------------------------------------ addresses
def _addr(command: str, kw: dict[str, Any]) -> bytes:
    if set(kw) - {"index", "address", "prefixlen", "flags"}:
        raise Unsupported("addr keyword")
    family, packed = _ip(kw.get("address"))
    prefixlen, index = kw.get("prefixlen"), kw.get("index")
    if type(prefixlen) is not int or type(index) is not int:
        raise Unsupported("prefixlen/index")
    if family == socket.AF_INET:
        if "flags" in kw:
            raise Unsupported("flags on IPv4")
        attrs = _attr(1, packed) + _attr(2, packed)          # IFA_ADDRESS, IFA_LOCAL
    else:
        attrs = _attr(1, packed) + (_attr(8, _u32(kw["flags"])) if "flags" in kw else b"")   # IFA_FLAGS
    return _IFADDR.pack(family, prefixlen, 0, 0, index) + attrs


# --------------------------------------------------------------------------------------- routes
_ROUTE_METRICS = {"RTAX_MTU": 2, "RTAX_ADVMSS": 8}
_HEADER_ONLY = ("scope", "proto", "type", "flags")


def _route(command: str, kw: dict[str, Any]) -> bytes:
    if command not in ("add", "replace", "del"):
        raise Unsupported(command)
    dst = kw.get("dst")
    if not isinstance(dst, str) or "/" not in dst:
        raise Unsupported("dst")
    host, _, plen = dst.partition("/")
    family, packed = _ip(host)
    dst_len = int(plen)
    table = kw.get("table", RT_TABLE_MAIN)
    proto, rtype = kw.get("proto", 0), kw.get("type", 0)
    proto, rtype = RTPROT.get(proto, proto), RTN.get(rtype, rtype)
    scope, flags = kw.get("scope", 0), kw.get("flags", 0)
    if any(type(v) is not int for v in (table, proto, rtype, scope, flags, dst_len)):
        raise Unsupported("route header")
    attrs = []
    for key, value in kw.items():
        if key in _HEADER_ONLY:
            continue
        if key == "dst":
            if dst_len:
                attrs.append(_attr(1, packed))
        elif key in ("gateway", "prefsrc"):
            fam, addr = _ip(value)
            if fam != family:
                raise Unsupported("mixed families")
            attrs.append(_attr(5 if key == "gateway" else 7, addr))
        elif key in ("oif", "priority", "table"):
            attrs.append(_attr({"oif": 4, "priority": 6, "table": 15}[key], _u32(value)))
        elif key == "metrics" and isinstance(value, dict) and set(value) <= set(_ROUTE_METRICS):
            attrs.append(_attr(8, b"".join(_attr(_ROUTE_METRICS[k], _u32(v)) for k, v in value.items())))
        else:
            raise Unsupported(key)
    header = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else RT_TABLE_MAIN, proto, scope, rtype, flags)
    return header + b"".join(attrs)


# ----------------------------------------------------------------------------------- neighbours
def _neigh(command: str, kw: dict[str, Any]) -> bytes:
    if list(kw) != ["ifindex", "dst", "lladdr", "state"]:
        raise Unsupported("neigh keywords")
    family, packed = _ip(kw["dst"])
    if type(kw["ifindex"]) is not int or type(kw["state"]) is not int:
        raise Unsupported("ifindex/state")
    return _NDMSG.pack(family, kw["ifindex"], kw["state"], 0, 0) + _attr(1, packed) + _attr(2, _mac(kw["lladdr"]))


# ------------------------------------------------------------------------------ traffic control
# tbf bodies as pyroute2 encodes them (its rate table), keyed by everything but the ifindex
_TBF_CACHE: dict[tuple[Any, ...], bytes] = {}
_TBF_CACHE_MAX = 64


def _tc(command: str, kw: dict[str, Any]) -> bytes:
    kind, index = kw.get("kind"), kw.get("index")
    if type(index) is not int:
        raise Unsupported("index")
    if kind == "tbf" and command == "replace":
        key = tuple(sorted((k, v) for k, v in kw.items() if k != "index"))
        cached = _TBF_CACHE.get(key)
        if cached is None:
            raise Unsupported("tbf not cached yet")
        return cached[:4] + struct.pack("=i", index) + cached[8:]
    if kind == "ingress" and command == "add" and set(kw) == {"kind", "index", "handle"}:
        return _TCMSG.pack(0, index, _uint(kw["handle"]), TC_H_INGRESS, 0) + _attr(1, b"ingress\0")
    if kind == "u32" and command == "add-filter":
        return _u32_redirect(index, kw)
    raise Unsupported(f"tc {kind}")


def remember_tbf(kw: dict[str, Any], body: bytes) -> None:
    """Keep pyroute2's encoding of a tbf replace (the ifindex aside) for the next pods."""
    if kw.get("kind") == "tbf" and len(_TBF_CACHE) < _TBF_CACHE_MAX:
        _TBF_CACHE[tuple(sorted((k, v) for k, v in kw.items() if k != "index"))] = body


def _u32_redirect(index: int, kw: dict[str, Any]) -> bytes:
    """A u32 filter matching everything, its one action a mirred egress redirect."""
    action = kw.get("action")
    if (set(kw) != {"kind", "index", "parent", "protocol", "prio", "target", "keys", "action"}
            or kw["keys"] != ["0x0/0x0+0"] or not isinstance(action, dict)
            or {k: v for k, v in action.items() if k != "ifindex"}
            != {"kind": "mirred", "direction": "egress", "action": "redirect"}):
        raise Unsupported("u32 filter")
    protocol, prio = kw["protocol"], kw["prio"]
    if type(protocol) is not int or type(prio) is not int:
        raise Unsupported("protocol/prio")
    mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, _uint(action["ifindex"]))
    act = _attr(1, _attr(1, b"mirred\0") + _attr(2 | NLA_F_NESTED, _attr(2, mirred)))
    selector = struct.pack("=BBBxHHhhI", TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + struct.pack("=IIii", 0, 0, 0, 0)
    options = _attr(7, act) + _attr(1, _u32(kw["target"])) + _attr(5, selector)
    info = (prio << 16) | socket.htons(protocol)
    return _TCMSG.pack(0, index, 0, _uint(kw["parent"]), info) + _attr(1, b"u32\0") + _attr(2, options)


_ENCODERS: dict[str, Callable[[str, dict[str, Any]], bytes]] = {
    "link": _link, "addr": _addr, "route": _route, "neigh": _neigh, "tc": _tc}


def encode(kind: str, command: str, kw: dict[str, Any]) -> bytes | None:
    """The message body (after the netlink header) of `IPRoute().<kind>(command, **kw)`, or None
    when this module does not build that shape (pyroute2 then does)."""
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        return None
    try:
        return encoder(command, kw)
    except (Unsupported, ValueError):
        return None
