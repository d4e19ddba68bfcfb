"""podnet-ptp: a veth pair and no bridge; the host routes to each pod (the reference `ptp`).

In the pod the IPAM address's subnet route is replaced by `gw/32 scope link` plus
`subnet via gw`, so every packet, even to a neighbour, goes through the host.  On
the host the veth holds the gateway address (/32 or /128) and a host route to the pod.
"""
from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Interface, IPConfig, Result, dns_from_dict
from ..net import addr, link, masq, netns, sysctl
from ..net.errors import LinkExists
from ..net.rtnl import RT_SCOPE_HOST, RT_SCOPE_LINK, Link, Rtnl, open_rtnl
from . import delegate, podlink, podside
from .common import get_bool, get_int, ipam_conf, prev_result, valid_attachments
from .errors import BadDelegateResult, CheckFailed


@dataclass(frozen=True)
class PtpConf:
    ip_masq: bool
    mtu: int
    dns: DNS


def parse_conf(req: Request) -> PtpConf:
    c = req.config
    if ipam_conf(c) is None:
        raise config_error("ipam", "ptp needs an IPAM configuration (it routes the pod's addresses)")
    return PtpConf(ip_masq=get_bool(c, "ipMasq"), mtu=get_int(c, "mtu", 0, 0, 65535),
                   dns=dns_from_dict(c.get("dns")))


def _host_prefix(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(f"{ip}/{ip.max_prefixlen}")


def _route_pod_through_gateway(pod: Rtnl, cv: Link, ips: tuple[IPConfig, ...]) -> None:
    """Swap the kernel's subnet route for `gw/32 scope link` + `subnet via gw`."""
    for ip in ips:
        assert ip.gateway is not None
        subnet = ip.address.network
        pod.del_route(subnet, oif=cv.index)
        pod.add_route(_host_prefix(ip.gateway).network, oif=cv.index, scope=RT_SCOPE_LINK, src=ip.address.ip)
        pod.add_route(subnet, gw=ip.gateway, oif=cv.index, src=ip.address.ip)


def _route_host_to_pod(host: Rtnl, hv: Link, ips: tuple[IPConfig, ...]) -> None:
    for ip in ips:
        assert ip.gateway is not None
        host.add_addr(hv.index, _host_prefix(ip.gateway), nodad=True)
        host.add_route(_host_prefix(ip.address.ip).network, oif=hv.index, scope=RT_SCOPE_HOST, replace=True)


def add(req: Request) -> Result:
    conf = parse_conf(req)
    with contextlib.ExitStack() as undo:
        pod_fd = undo.enter_context(netns.opened(req.netns))
        host = undo.enter_context(open_rtnl())
        pod = undo.enter_context(open_rtnl(pod_fd))
        try:
            hv, cv = link.make_veth_into(host, pod, pod_fd, req.ifname, conf.mtu)
        except LinkExists:
            raise config_error("CNI_IFNAME", f"interface {req.ifname!r} already exists in {req.netns}") from None
        undo.callback(podside.quietly, host.del_link, hv.index)
        ipam = delegate.ipam_add(req)
        undo.callback(delegate.ipam_del, req)
        if not ipam.ips:
            raise BadDelegateResult("IPAM plugin returned missing IP config")
        for ip in ipam.ips:
            if ip.gateway is None:
                raise config_error("ipam", f"no gateway for {ip.address}: ptp routes the pod through it")
            sysctl.ensure("net/ipv4/ip_forward" if ip.family == 4 else "net/ipv6/conf/all/forwarding", 1)
        ips = tuple(IPConfig(i.address, i.gateway, 1) for i in ipam.ips)
        podside.host_end_without_ipv6(hv.name, ips)
        with netns.entered(pod_fd):
            if any(i.family == 6 for i in ips):
                addr.prepare_ipv6(req.ifname)
        addr.configure(pod, cv, ips, ipam.routes)
        _route_pod_through_gateway(pod, cv, ips)
        _route_host_to_pod(host, hv, ips)
        if conf.ip_masq:
            masq.add(req.network, req.container_id, [i.address for i in ips])
            undo.callback(masq.remove, [i.address.ip for i in ips])
        undo.pop_all()
    ifaces = (Interface(hv.name, hv.mac), Interface(cv.name, cv.mac, sandbox=req.netns))
    return Result(req.cni_version, ifaces, ips, ipam.routes, podside.pick_dns(conf.dns, ipam.dns))


def delete(req: Request) -> None:
    conf = parse_conf(req)
    prev = prev_result(req) if req.prev_result else None
    found = podside.remove_pod_link(req)  # the host end, its address and route go with it
    if conf.ip_masq:
        podside.release_masq(req, found, prev)
    delegate.ipam_del(req)


def check(req: Request) -> None:
    parse_conf(req)

    def verify(host: Rtnl, pod: Rtnl, cv: Link) -> None:
        """ptp's own routes: gw/32 on the link and the subnet via gw in the pod, /32 to the pod on the host."""
        prev = prev_result(req)
        assert prev is not None
        in_pod = {(r.dst, r.gw) for fam in (4, 6) for r in pod.routes(fam) if r.oif == cv.index}
        for ip in prev.ips:
            if ip.gateway is None:
                continue
            for dst, gw in ((_host_prefix(ip.gateway).network, None), (ip.address.network, ip.gateway)):
                if (dst, gw) not in in_pod:
                    raise CheckFailed(f"route to {dst}{' via ' + str(gw) if gw else ''} missing in {req.netns}")
        hv = link.host_peer_of(host, cv)
        if hv is None:
            raise CheckFailed(f"the host end of {req.ifname!r} is gone")
        have = {(r.dst, r.oif) for fam in (4, 6) for r in host.routes(fam)}
        for iface in podside.interface_ips(prev, req.ifname):
            if (_host_prefix(iface.ip).network, hv.index) not in have:
                raise CheckFailed(f"host route to {iface.ip} via {hv.name} missing")

    podlink.check(req, "veth", True, verify)


def status(req: Request) -> None:
    parse_conf(req)
    delegate.ipam_status(req)


def gc(req: Request) -> None:
    conf = parse_conf(req)
    if conf.ip_masq:
        valid = {cid for cid, _ in valid_attachments(req)}
        masq.remove(masq.owned_by(req.network, keep=valid))
    delegate.ipam_gc(req)


PLUGIN = Plugin("ptp", add, delete, check, status, gc)
