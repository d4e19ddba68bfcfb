"""The shared ADD/DEL/CHECK shape of plugins that put one link into the pod and address it
directly (macvlan, ipvlan, vlan, dummy, host-device): make the link, then IPAM, then
addresses and routes; without IPAM the link is just brought up (L2 only)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.types import DNS, Interface, IPConfig, Result
from ..net import addr, netns, sysctl
from ..net.errors import LinkExists
from ..net.rtnl import Link, Rtnl, open_rtnl
from . import delegate, podside
from .common import prev_result
from .errors import BadDelegateResult, CheckFailed

# make(host, pod, pod_fd) -> the link, already named IFNAME inside the pod
MakeLink = Callable[[Rtnl, Rtnl, int], Link]
# unmake(pod, link): undo `make` (default: delete the link)
UnmakeLink = Callable[[Rtnl, Link], None]


def attach(req: Request, make: MakeLink, has_ipam: bool, dns: DNS,
           ips_from: Result | None = None, unmake: UnmakeLink = podside.delete_link,
           adopt_ipam_mac: bool = False) -> Result:
    """ADD: the link, then its addresses (from IPAM, or `ips_from` when chained).  With
    `adopt_ipam_mac` (a link with a MAC of its own and none asked for) an IPAM result naming the
    interface's MAC is obeyed: an address that is a cloud port (Neutron) is only let through
    with the port's MAC."""
    with contextlib.ExitStack() as undo:
        pod_fd = undo.enter_context(netns.opened(req.netns))
        host = undo.enter_context(open_rtnl())
        pod = undo.enter_context(open_rtnl(pod_fd))
        try:
            lk = make(host, pod, pod_fd)
        except LinkExists:
            if pod.link(req.ifname) is not None:
                raise config_error("CNI_IFNAME", f"interface {req.ifname!r} already exists in {req.netns}") from None
            raise
        undo.callback(podside.quietly, unmake, pod, lk)
        if has_ipam:
            ipam = delegate.ipam_add(req)
            undo.callback(delegate.ipam_del, req)
            if not ipam.ips:
                raise BadDelegateResult("IPAM plugin returned missing IP config")
        else:
            ipam = ips_from or Result(req.cni_version)
        ips = tuple(IPConfig(i.address, i.gateway, 0) for i in ipam.ips)
        mac = next((i.mac for i in ipam.interfaces if i.name == req.ifname and i.mac), "") if adopt_ipam_mac else ""
        if mac and mac.lower() != lk.mac.lower():
            pod.set_link(lk.index, address=mac)
        with netns.entered(pod_fd):
            if any(i.family == 6 for i in ips):
                addr.prepare_ipv6(req.ifname)
            with contextlib.suppress(OSError):  # best effort, as the reference does
                sysctl.ensure(f"net/ipv4/conf/{req.ifname}/arp_notify", 1)
                sysctl.ensure(f"net/ipv6/conf/{req.ifname}/ndisc_notify", 1)
        if ips:
            addr.configure(pod, lk, ips, ipam.routes)
        elif not lk.up:
            pod.set_link(lk.index, state="up")
        lk = pod.require_link(req.ifname)
        undo.pop_all()
    iface = Interface(lk.name, lk.mac, sandbox=req.netns)
    return Result(req.cni_version, (iface,), ips, ipam.routes, podside.pick_dns(dns, ipam.dns))


def detach(req: Request, has_ipam: bool, unmake: UnmakeLink | None = None) -> None:
    """DEL: IPAM first (it never needs the netns), then the link if the netns still exists."""
    if has_ipam:
        delegate.ipam_del(req)
    podside.remove_pod_link(req, unmake or podside.delete_link)


def check(req: Request, kind: str, has_ipam: bool, verify: Callable[[Rtnl, Rtnl, Link], None]) -> None:
    """CHECK: the link exists with the right kind and MAC, then `verify` (mode, master…),
    then addresses and routes, then IPAM."""
    prev = prev_result(req)
    if prev is None:
        raise config_error("prevResult", "CHECK needs the ADD result")
    if podside.prev_interface(prev, req.ifname, req.netns) is None:
        raise CheckFailed(f"prevResult has no interface {req.ifname!r} in sandbox {req.netns}")
    with open_rtnl() as host, netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        lk = pod.link(req.ifname)
        if lk is None:
            raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
        if kind and lk.kind != kind:
            raise CheckFailed(f"{req.ifname!r} is a {lk.kind or 'device'} link, not {kind}")
        podside.check_mac(lk, prev, req)
        verify(host, pod, lk)
        podside.check_addresses_and_routes(pod, lk, prev, req)
    if has_ipam:
        delegate.ipam_check(req)


def ipam_status_and_gc(has_ipam: Callable[[Request], bool]) -> tuple[Callable[[Request], None],
                                                                      Callable[[Request], None]]:
    """STATUS and GC for these plugins: whatever their IPAM says (they keep no state of their own)."""
    def status(req: Request) -> None:
        if has_ipam(req):
            delegate.ipam_status(req)

    def gc(req: Request) -> None:
        if has_ipam(req):
            delegate.ipam_gc(req)

    return status, gc
