"""host-local ranges: parsing, defaults, validation and round-robin iteration (pure)."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Range:
    subnet: IPNet
    start: IPAddr
    end: IPAddr
    gateway: IPAddr | None

    def contains(self, ip: IPAddr) -> bool:
        return ip.version == self.start.version and self.start <= ip <= self.end  # type: ignore[operator]

    def overlaps(self, other: Range) -> bool:
        return (self.start.version == other.start.version
                and self.start <= other.end and other.start <= self.end)  # type: ignore[operator]

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class RangeSet:
    ranges: tuple[Range, ...]

    def contains(self, ip: IPAddr) -> bool:
        return any(r.contains(ip) for r in self.ranges)

    def range_of(self, ip: IPAddr) -> Range | None:
        for r in self.ranges:
            if r.contains(ip):
                return r
        return None

    def iterate_from(self, last: IPAddr | None) -> Iterator[tuple[IPAddr, Range]]:
        """Every address once, starting after `last` (round-robin), else from the start."""
        idx = next((i for i, r in enumerate(self.ranges) if last is not None and r.contains(last)), None)
        if idx is None or last is None:
            for r in self.ranges:
                yield from ((ip, r) for ip in _span(r.start, r.end))
            return
        first = self.ranges[idx]
        if last != first.end:
            yield from ((ip, first) for ip in _span(last + 1, first.end))
        for k in range(1, len(self.ranges)):
            r = self.ranges[(idx + k) % len(self.ranges)]
            yield from ((ip, r) for ip in _span(r.start, r.end))
        yield from ((ip, first) for ip in _span(first.start, last))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def _span(first: IPAddr, last: IPAddr) -> Iterator[IPAddr]:
    ip = first
    while ip <= last:  # type: ignore[operator]
        yield ip
        if ip == last:
            return
        ip = ip + 1


def _ip(value: Any, field: str) -> IPAddr:
    if not isinstance(value, str):      # ip_address(5) would be 0.0.0.5
        raise config_error(field, f"must be an IP address string, not {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise config_error(field, f"invalid IP address {value!r}") from None


def parse_range(d: Any, field: str) -> Range:
    if not isinstance(d, dict):
        raise config_error(field, "must be an object")
    raw = d.get("subnet")
    if not isinstance(raw, str):        # ip_network(5) would be 0.0.0.5/32
        raise config_error(f"{field}.subnet", f"must be a CIDR string, not {raw!r}")
    try:
        subnet = ipaddress.ip_network(raw, strict=True)
    except ValueError as e:
        raise config_error(f"{field}.subnet", f"invalid subnet {raw!r} ({e})") from None
    if subnet.num_addresses < 4:
        raise config_error(f"{field}.subnet", f"network {subnet} too small to allocate from")
    v4 = subnet.version == 4
    start = _ip(d["rangeStart"], f"{field}.rangeStart") if d.get("rangeStart") else subnet.network_address + 1
    end = _ip(d["rangeEnd"], f"{field}.rangeEnd") if d.get("rangeEnd") else (
        subnet.broadcast_address - 1 if v4 else subnet.broadcast_address)
    gw = _ip(d["gateway"], f"{field}.gateway") if d.get("gateway") else subnet.network_address + 1
    for name, ip in (("rangeStart", start), ("rangeEnd", end), ("gateway", gw)):
        if ip not in subnet:
            raise config_error(f"{field}.{name}", f"{ip} not in network {subnet}")
    if start > end:  # type: ignore[operator]  # same family: both are in subnet
        raise config_error(f"{field}.rangeStart", f"{start} is after rangeEnd {end}")
    return Range(subnet, start, end, gw)


def parse_range_sets(conf: dict[str, Any], extra: Any = None) -> tuple[RangeSet, ...]:
    """`runtimeConfig.ipRanges` (extra) + legacy subnet + `ranges`, validated for overlap."""
    raw_sets: list[tuple[str, Any]] = []
    if extra:
        raw_sets += [(f"runtimeConfig.ipRanges[{i}]", s) for i, s in enumerate(extra)]
    if conf.get("subnet"):
        legacy = {k: conf.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}
        raw_sets.append(("ipam", [legacy]))
    ranges = conf.get("ranges")
    if ranges is not None and not isinstance(ranges, list):
        raise config_error("ipam.ranges", "must be a list of range sets")
    raw_sets += [(f"ipam.ranges[{i}]", s) for i, s in enumerate(ranges or [])]
    if not raw_sets:
        raise config_error("ipam.ranges", "no IP ranges specified")
    sets: list[RangeSet] = []
    for field, raw in raw_sets:
        if not isinstance(raw, list) or not raw:
            raise config_error(field, "a range set must be a non-empty list")
        rs = tuple(parse_range(r, f"{field}[{j}]") for j, r in enumerate(raw))
        if len({r.subnet.version for r in rs}) > 1:
            raise config_error(field, "mixes IPv4 and IPv6 ranges")
        for a in range(len(rs)):
            for b in range(a + 1, len(rs)):
                if rs[a].overlaps(rs[b]):
                    raise config_error(field, f"ranges {rs[a]} and {rs[b]} overlap")
        sets.append(RangeSet(rs))
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            if any(x.overlaps(y) for x in sets[a].ranges for y in sets[b].ranges):
                raise config_error("ipam.ranges", f"range sets {sets[a]} and {sets[b]} overlap")
    return tuple(sets)
