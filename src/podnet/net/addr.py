"""Apply a CNI result's addresses and routes to an interface (ipam.ConfigureIface's job)."""
from __future__ import annotations

import ipaddress

from ..cni.types import IPConfig, Result, Route
from . import netns, sysctl
from .errors import AddressConflict
from .rtnl import Link, Rtnl, open_rtnl

IPInterfaceT = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _family_gateway(ips: tuple[IPConfig, ...], family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for ip in ips:
        if ip.family == family and ip.gateway is not None:
            return ip.gateway
    return None


def prepare_ipv6(ifname: str, dad: bool = False) -> None:
    """Enable IPv6 on the link and (by default) skip DAD; call inside the link's netns."""
    base = f"net/ipv6/conf/{ifname}"
    try:
        sysctl.ensure(f"{base}/disable_ipv6", 0)
        sysctl.ensure(f"{base}/accept_dad", 1 if dad else 0)
        sysctl.ensure("net/ipv6/conf/lo/disable_ipv6", 0)
    except OSError:
        pass  # IPv6 disabled in this kernel: the address add will report it


def configure(rtnl: Rtnl, link: Link, ips: tuple[IPConfig, ...], routes: tuple[Route, ...],
              dad: bool = False) -> None:
    """Addresses on `link`, link up, then the routes (gw defaults to the family's gateway).

    IPv6 addresses skip duplicate address detection unless `dad`: the accept_dad sysctl alone
    does not (the kernel also honours all.accept_dad), and a tentative address cannot yet be a
    route's source — ptp's `src` routes failed with EINVAL now and then before this.
    """
    for ip in ips:
        rtnl.add_addr(link.index, ip.address, nodad=not dad)
    if not link.up:
        rtnl.set_link(link.index, state="up")
    for r in routes:
        gw = r.gw if r.gw is not None else _family_gateway(ips, r.dst.version)
        rtnl.add_route(r.dst, gw=gw, oif=link.index, priority=r.priority, mtu=r.mtu,
                       advmss=r.advmss, table=r.table, scope=r.scope, replace=True)


def missing_addresses(rtnl: Rtnl, link: Link, wanted: list[IPInterfaceT]) -> list[IPInterfaceT]:
    """The wanted addresses that are missing from the link."""
    present = set(rtnl.addrs(link.index))
    return [a for a in wanted if a not in present]


def missing_routes(rtnl: Rtnl, result: Result, link: Link) -> list[Route]:
    """Routes of `result` that the link's netns no longer has (dst match, table main/given)."""
    missing = []
    for fam in (4, 6):
        wanted = [r for r in result.routes if r.dst.version == fam]
        if not wanted:
            continue
        every = rtnl.routes(fam, table=None)
        have = {(e.dst, e.table) for e in every}
        moved = {e.dst for e in every if e.oif == link.index}  # e.g. into a source-routing table (sbr)
        missing += [r for r in wanted if (r.dst, r.table or 254) not in have and r.dst not in moved]
    return missing


def ensure_gateway(rtnl: Rtnl, link: Link, gw: IPInterfaceT, force: bool) -> bool:
    """Put the gateway address on `link` (a bridge).  True when it was added by us.

    The reference rule: an IPv4 bridge holds one address, an IPv6 bridge one per
    non-overlapping subnet; a different one is an error unless `force` replaces it.
    """
    for a in rtnl.addrs(link.index, gw.version):
        if a == gw:
            return False
        if gw.version == 4 or a.network.overlaps(gw.network):
            if not force:
                raise AddressConflict(f"{link.name!r} already has an IP address different from {gw}")
            rtnl.del_addr(link.index, a)
    rtnl.add_addr(link.index, gw, nodad=True)  # a gateway must answer now, not after DAD
    return True


def netns_address(path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The first global address in the netns at `path` (a pod's), None if it has none."""
    with netns.opened(path) as fd, open_rtnl(fd) as r:
        for lk in r.links():
            for a in r.addrs(lk.index):
                if not a.ip.is_loopback and not a.ip.is_link_local:
                    return a.ip
    return None


def holder_of(path: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[bool, str]:
    """(is it up, its name) of the link holding `ip` in the netns at `path`; (False, "") if none."""
    with netns.opened(path) as fd, open_rtnl(fd) as r:
        for lk in r.links():
            if any(a.ip == ip for a in r.addrs(lk.index)):
                return lk.up, lk.name
    return False, ""
