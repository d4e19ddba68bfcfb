"""Steps every interface-making plugin shares: remove the pod's link on DEL, release its
masquerade entries, and CHECK a link's addresses and routes against prevResult."""
from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from ..cni.request import Request
from ..cni.types import DNS, IPConfig, Result
from ..net import addr, masq, netns, sysctl
from ..net.errors import LinkNotFound, NetError, NetnsGone
from ..net.rtnl import Link, Rtnl, open_rtnl
from .errors import CheckFailed

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_end_without_ipv6(host_end: str, ips: Sequence[IPConfig]) -> None:
    """IPv6 off on the host end of a pod's veth when the pod has no IPv6 address — before the
    pod's end comes up, so the host end never gets a link-local (sysctl.disable_ipv6 says why)."""
    if not any(ip.family == 6 for ip in ips):
        sysctl.disable_ipv6(host_end)


def quietly(fn: Callable[..., Any], *args: Any) -> None:
    """For undo steps: a failure to undo must not hide the error that caused it."""
    with contextlib.suppress(NetError):
        fn(*args)


def delete_link(pod: Rtnl, link: Link) -> None:
    with contextlib.suppress(LinkNotFound):
        pod.del_link(link.index)


def remove_pod_link(req: Request, remove: Callable[[Rtnl, Link], None] = delete_link) -> list[IPAddr]:
    """Take IFNAME out of the pod — by default delete it (a veth takes its host end with
    it); host-device gives it back instead.  Returns its addresses, if any.

    Nothing to do when the netns or the link is already gone (DEL is idempotent).
    """
    if not req.netns:
        return []
    try:
        with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
            link = pod.link(req.ifname)
            if link is None:
                return []
            found = [a.ip for a in pod.addrs(link.index) if not a.ip.is_link_local]
            remove(pod, link)
            return found
    except NetnsGone:
        return []


def release_masq(req: Request, found: list[IPAddr], prev: Result | None) -> None:
    """Drop the pod's masquerade elements: by the addresses we saw, else by container ID."""
    known = set(found) | {i.address.ip for i in (prev.ips if prev else ())}
    if not known:
        known = set(masq.owned_by(req.network, req.container_id))
    masq.remove(sorted(known, key=str))


def interface_ips(prev: Result, ifname: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The prevResult addresses that belong to `ifname` (or to no interface in particular)."""
    return [i.address for i in prev.ips if i.interface is None or
            (i.interface < len(prev.interfaces) and prev.interfaces[i.interface].name == ifname)]


def prev_interface(prev: Result, ifname: str, sandbox: str) -> Any:
    """The prevResult interface entry for the pod's IFNAME, or None."""
    return next((i for i in prev.interfaces if i.name == ifname and i.sandbox == sandbox), None)


def check_addresses_and_routes(pod: Rtnl, link: Link, prev: Result, req: Request) -> None:
    """CHECK: every address prevResult gave IFNAME is there, and every route."""
    missing = addr.missing_addresses(pod, link, interface_ips(prev, req.ifname))
    if missing:
        raise CheckFailed(f"address {missing[0]} missing from {req.ifname}")
    gone = addr.missing_routes(pod, prev, link)
    if gone:
        raise CheckFailed(f"route to {gone[0].dst} missing in {req.netns}")


def check_mac(link: Link, prev: Result, req: Request) -> None:
    want = prev_interface(prev, req.ifname, req.netns)
    if want is not None and want.mac and want.mac.lower() != link.mac.lower():
        raise CheckFailed(f"{req.ifname} has MAC {link.mac}, prevResult says {want.mac}")


def pick_dns(conf_dns: DNS, ipam_dns: DNS) -> DNS:
    """The plugin's own dns when it sets any field, else what IPAM returned (the reference rule)."""
    return conf_dns if not conf_dns.is_empty() else ipam_dns
