"""podnet-sbr: source-based routing for the pod's interface (the reference `sbr`).

For each of IFNAME's addresses: a routing table (the first unused from 100, or `table`),
a rule `from <ip> lookup <table>`, the default route via the gateway (or `gateways`)
and copies of the interface's routes in it; then the interface's routes leave the
main table (with `addSourceHints`, subnet routes stay, with the address as source).
So replies leave by the interface their source address belongs to.
"""
from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from ..net import netns
from ..net.errors import NetError, NetnsGone
from ..net.rtnl import RT_SCOPE_LINK, Rtnl, open_rtnl
from .common import get_bool, get_int, require_prev_result
from .errors import CheckFailed
from .podside import interface_ips

FIRST_TABLE = 100
DEFAULT = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def parse_conf(req: Request) -> tuple[int, dict[int, Any], bool]:
    c = req.config
    table = get_int(c, "table", 0, 0, 2 ** 31 - 1) if c.get("table") is not None else 0
    gws: dict[int, Any] = {}
    raw = c.get("gateways") or []
    if not isinstance(raw, list) or len(raw) > 2:
        raise config_error("gateways", "must be a list of at most one IPv4 and one IPv6 address")
    for g in raw:
        try:
            ip = ipaddress.ip_address(g)
        except (ValueError, TypeError):
            raise config_error("gateways", f"{g!r} is not an IP address") from None
        if ip.version in gws:
            raise config_error("gateways", f"more than one IPv{ip.version} gateway")
        gws[ip.version] = ip
    return table, gws, get_bool(c, "addSourceHints")


def _free_table(pod: Rtnl, start: int, taken: set[int]) -> int:
    used = {t for fam in (4, 6) for _, t, _ in pod.rules(fam)} | taken
    t = start
    while t in used or any(pod.routes(fam, table=t) for fam in (4, 6)):
        t += 1
    return t


def add(req: Request) -> Result:
    table, gws, hints = parse_conf(req)
    prev = require_prev_result(req, "sbr")
    ips = interface_ips(prev, req.ifname)
    gateways = {i.address: i.gateway for i in prev.ips}
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        lk = pod.link(req.ifname)
        if lk is None:
            raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
        theirs = {fam: [r for r in pod.routes(fam) if r.oif == lk.index] for fam in (4, 6)}
        taken: set[int] = set()
        t = table or _free_table(pod, FIRST_TABLE, taken)
        for ip in ips:
            host = ipaddress.ip_network(f"{ip.ip}/{ip.max_prefixlen}")
            pod.add_rule(host, t)
            gw = gws.get(ip.version) or gateways.get(ip)
            for r in theirs[ip.version]:
                pod.add_route(r.dst, gw=r.gw, oif=lk.index, table=t, scope=r.scope, replace=True)
            if gw is not None:
                pod.add_route(DEFAULT[ip.version], gw=gw, oif=lk.index, table=t, replace=True)
            taken.add(t)
            t = _free_table(pod, t + 1, taken)
        for routes in theirs.values():
            for r in routes:
                if hints and r.scope == RT_SCOPE_LINK:
                    continue
                with contextlib.suppress(NetError):
                    pod.del_route(r.dst, gw=r.gw, oif=lk.index)
        if hints:
            for ip in ips:
                pod.add_route(ip.network, oif=lk.index, scope=RT_SCOPE_LINK, src=ip.ip, replace=True)
    return prev


def _rules_of(pod: Rtnl, addrs: set[Any]) -> list[tuple[Any, int]]:
    out = []
    for fam in (4, 6):
        for src, table, _ in pod.rules(fam):
            if src is not None and src.prefixlen == src.max_prefixlen and src.network_address in addrs:
                out.append((src, table))
    return out


def delete(req: Request) -> None:
    """Remove the rules for IFNAME's addresses and empty their tables; nothing if the pod is gone."""
    if not req.netns:
        return
    try:
        with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
            lk = pod.link(req.ifname)
            if lk is None:
                return
            addrs = {a.ip for a in pod.addrs(lk.index)}
            for src, table in _rules_of(pod, addrs):
                with contextlib.suppress(NetError):
                    pod.del_rule(src, table)
                for r in pod.routes(src.version, table=table):
                    with contextlib.suppress(NetError):
                        pod.del_route(r.dst, gw=r.gw, oif=r.oif, table=table)
    except NetnsGone:
        pass


def check(req: Request) -> None:
    parse_conf(req)
    prev = require_prev_result(req, "sbr")
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        have = {src.network_address for src, _ in _rules_of(pod, {i.ip for i in interface_ips(prev, req.ifname)})}
        for ip in interface_ips(prev, req.ifname):
            if ip.ip not in have:
                raise CheckFailed(f"no source rule for {ip.ip} in {req.netns}")


def status(req: Request) -> None:
    parse_conf(req)


def gc(req: Request) -> None:
    """Nothing outside the pods: its rules and tables die with the pod's netns."""
    parse_conf(req)


PLUGIN = Plugin("sbr", add, delete, check, status, gc)
