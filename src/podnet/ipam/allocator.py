"""Allocate, release and check addresses over any Store (pure logic, host-local rules).

One address per range set; a handle that already holds one gets it back (a repeated
ADD is idempotent, unlike the reference); requested addresses must fall in some set;
the gateway is never handed out; the cursor makes allocation round-robin.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import AddressUnavailable, RangeExhausted
from .ranges import Range, RangeSet
from .store import Handle, IPAddr, Session


@dataclass(frozen=True)
class Allocation:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: IPAddr | None
    range_id: int


def _allocation(ip: IPAddr, r: Range, range_id: int) -> Allocation:
    return Allocation(ipaddress.ip_interface(f"{ip}/{r.subnet.prefixlen}"), r.gateway, range_id)


def _pick(sess: Session, rs: RangeSet, range_id: int, handle: Handle) -> Allocation:
    for ip, r in rs.iterate_from(sess.last_reserved(range_id)):
        if ip == r.gateway:
            continue
        if sess.reserve(ip, handle, range_id):
            return _allocation(ip, r, range_id)
    raise RangeExhausted(str(rs))


def allocate(sess: Session, sets: tuple[RangeSet, ...], handle: Handle,
             requested: Iterable[IPAddr] = ()) -> list[Allocation]:
    """One address from every range set; all-or-nothing."""
    wanted = list(requested)
    held = sess.get(handle)
    made: list[IPAddr] = []
    out: list[Allocation] = []
    try:
        for range_id, rs in enumerate(sets):
            mine = [ip for ip in held if rs.contains(ip)]
            asked = [ip for ip in wanted if rs.contains(ip)]
            if mine:
                ip = mine[0]
                r = rs.range_of(ip)
                assert r is not None
                out.append(_allocation(ip, r, range_id))
            elif asked:
                ip = asked[0]
                r = rs.range_of(ip)
                assert r is not None
                if ip == r.gateway:
                    raise AddressUnavailable(f"requested IP {ip} is the gateway of range {r}")
                if not sess.reserve(ip, handle, range_id):
                    raise AddressUnavailable(f"requested IP address {ip} is not available in range set {rs}")
                made.append(ip)
                out.append(_allocation(ip, r, range_id))
            else:
                a = _pick(sess, rs, range_id, handle)
                made.append(a.address.ip)
                out.append(a)
            for ip in asked:
                wanted.remove(ip)
        if wanted:
            raise AddressUnavailable(f"failed to allocate all requested IPs: {', '.join(map(str, wanted))}")
    except BaseException:
        for ip in made:
            sess.release_ip(ip)
        raise
    return out


def release(sess: Session, handle: Handle) -> list[IPAddr]:
    return sess.release(handle)


def gc(sess: Session, valid: set[Handle]) -> list[tuple[IPAddr, Handle]]:
    """Release every reservation whose holder is not in `valid`."""
    gone = []
    for ip, h in sess.holders().items():
        if not any(h.matches(v) for v in valid):
            sess.release_ip(ip)
            gone.append((ip, h))
    return gone
