"""Config shared by plugins that hang a link off a lower device (macvlan, ipvlan, vlan):
finding the master, in the host or (linkInContainer) in the pod, and checking the MTU."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cni.errors import config_error
from ..net import link
from ..net.rtnl import Link, Rtnl
from .common import check_link_name, get_str


def default_route_link(where: Rtnl) -> str:
    """The interface of the first default route (IPv4, then IPv6), as the reference picks it."""
    for fam in (4, 6):
        for r in where.routes(fam):
            if r.dst.prefixlen == 0 and r.oif:
                lk = where.link_by_index(r.oif)
                if lk is not None:
                    return lk.name
    raise config_error("master", "no master given and no default route to take it from")


def resolve_master(where: Rtnl, master: str, mtu: int, in_container: bool) -> Link:
    """The master link, up, with room for `mtu`; errors name the field to fix."""
    name = check_link_name(master, "master") if master else default_route_link(where)
    lk = where.link(name)
    side = "the pod's" if in_container else "the host's"
    if lk is None:
        raise config_error("master", f"master {name!r} not found in {side} network namespace")
    if not lk.up:
        raise config_error("master", f"master {name!r} is down")
    if mtu > lk.mtu:
        raise config_error("mtu", f"invalid MTU {mtu}, must be [0, master MTU({lk.mtu})]")
    return lk


def master_of(host: Rtnl, pod: Rtnl, lk: Link, in_container: bool) -> Link | None:
    """The lower device a pod link hangs off (IFLA_LINK names it in its own netns)."""
    return (pod if in_container else host).link_by_index(lk.link) if lk.link else None


def master_name(conf: dict[str, Any]) -> str:
    """`master` from the config, checked as an interface name ('' when unset)."""
    name = get_str(conf, "master")
    return check_link_name(name, "master") if name else ""


def link_on_master(ifname: str, master: str, mtu: int, in_container: bool, kind: str,
                   **attrs: object) -> Callable[[Rtnl, Rtnl, int], Link]:
    """podlink's `make` step for a link of `kind` hanging off `master` (host or pod side)."""
    def make(host: Rtnl, pod: Rtnl, pod_fd: int) -> Link:
        where = pod if in_container else host
        lower = resolve_master(where, master, mtu, in_container)
        return link.create_in_pod(where, pod, pod_fd, ifname, kind, link=lower.index, mtu=mtu or None, **attrs)
    return make
