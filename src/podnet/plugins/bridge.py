"""podnet-bridge: a veth per pod, its host end on a Linux bridge (the reference `bridge`)."""
from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Interface, IPConfig, Result, Route, dns_from_dict
from ..net import addr, link, masq, netns, spoofchk, sysctl
from ..net.errors import LinkExists
from ..net.rtnl import Link, Rtnl, open_rtnl
from . import delegate, podside
from .common import (
    check_link_name,
    get_bool,
    get_int,
    get_str,
    ipam_conf,
    prev_result,
    requested_mac,
    valid_attachments,
)
from .errors import CheckFailed

DEFAULT_ROUTES = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@dataclass(frozen=True)
class BridgeConf:
    bridge: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    mtu: int
    hairpin: bool
    promisc: bool
    vlan: int
    macspoofchk: bool
    enable_dad: bool
    has_ipam: bool
    dns: DNS


def parse_conf(req: Request) -> BridgeConf:
    c = req.config
    is_default_gw = get_bool(c, "isDefaultGateway")
    conf = BridgeConf(
        bridge=check_link_name(get_str(c, "bridge", "cni0"), "bridge"),
        is_gateway=get_bool(c, "isGateway") or is_default_gw, is_default_gateway=is_default_gw,
        force_address=get_bool(c, "forceAddress"), ip_masq=get_bool(c, "ipMasq"),
        mtu=get_int(c, "mtu", 0, 0, 65535), hairpin=get_bool(c, "hairpinMode"),
        promisc=get_bool(c, "promiscMode"), vlan=get_int(c, "vlan", 0, 0, 4094),
        macspoofchk=get_bool(c, "macspoofchk"), enable_dad=get_bool(c, "enabledad"),
        has_ipam=ipam_conf(c) is not None, dns=dns_from_dict(c.get("dns")))
    if conf.hairpin and conf.promisc:
        raise config_error("hairpinMode", "cannot set hairpin mode and promiscuous mode at the same time")
    if conf.ip_masq and not conf.has_ipam:
        raise config_error("ipMasq", "needs an IPAM configuration")
    return conf


def _routes(conf: BridgeConf, ipam: Result) -> tuple[Route, ...]:
    routes = list(ipam.routes)
    if conf.is_default_gateway:
        for ip in ipam.ips:
            if ip.gateway is None:
                raise config_error("isDefaultGateway", f"IPAM gave no gateway for {ip.address}")
            if not any(r.dst == DEFAULT_ROUTES[ip.family] for r in routes):
                routes.append(Route(DEFAULT_ROUTES[ip.family], ip.gateway))
    return tuple(routes)


def _setup_gateway(host: Rtnl, conf: BridgeConf, br: Link, ips: tuple[IPConfig, ...],
                   undo: contextlib.ExitStack) -> None:
    for ip in ips:
        if ip.gateway is None:
            continue
        gw = ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
        if addr.ensure_gateway(host, br, gw, conf.force_address):
            undo.callback(podside.quietly, host.del_addr, br.index, gw)
        sysctl.ensure("net/ipv4/ip_forward" if ip.family == 4 else "net/ipv6/conf/all/forwarding", 1)


def add(req: Request) -> Result:
    conf = parse_conf(req)
    mac = requested_mac(req)
    with contextlib.ExitStack() as undo:
        pod_fd = undo.enter_context(netns.opened(req.netns))
        host = undo.enter_context(open_rtnl())
        pod = undo.enter_context(open_rtnl(pod_fd))
        br = link.ensure_bridge(host, conf.bridge, conf.mtu, vlan_filtering=conf.vlan > 0)
        if conf.promisc and not br.promisc:
            host.set_promisc(br.index, True)
        try:  # the link before IPAM: an IFNAME clash must not reach IPAM, whose rollback frees live addresses
            hv, cv = link.make_veth_into(host, pod, pod_fd, req.ifname, conf.mtu, mac, master=br.index)
        except LinkExists:
            raise config_error("CNI_IFNAME", f"interface {req.ifname!r} already exists in {req.netns}") from None
        undo.callback(podside.quietly, host.del_link, hv.index)
        ipam = delegate.ipam_add(req) if conf.has_ipam else Result(req.cni_version)
        if conf.has_ipam:
            undo.callback(delegate.ipam_del, req)
        if conf.hairpin:
            host.set_brport(hv.index, mode=1)  # IFLA_BRPORT_MODE: hairpin
        if conf.vlan:
            host.add_bridge_vlan(hv.index, conf.vlan)
        ips = tuple(IPConfig(i.address, i.gateway, 2) for i in ipam.ips)
        if conf.has_ipam:         # (without IPAM the pod may configure IPv6 itself: the port keeps it)
            podside.host_end_without_ipv6(hv.name, ips)
        routes = _routes(conf, ipam)
        with netns.entered(pod_fd):
            if any(i.family == 6 for i in ips):
                addr.prepare_ipv6(req.ifname, conf.enable_dad)
            sysctl.ensure(f"net/ipv4/conf/{req.ifname}/arp_notify", 1)
        addr.configure(pod, cv, ips, routes, dad=conf.enable_dad)
        if conf.is_gateway:
            _setup_gateway(host, conf, br, ips, undo)
        if conf.ip_masq:
            masq.add(req.network, req.container_id, [i.address for i in ips])
            undo.callback(masq.remove, [i.address.ip for i in ips])
        if conf.macspoofchk:
            spoofchk.add(hv.name, cv.mac, req.network, req.container_id)
        undo.pop_all()
    ifaces = (Interface(br.name, br.mac), Interface(hv.name, hv.mac), Interface(cv.name, cv.mac, sandbox=req.netns))
    return Result(req.cni_version, ifaces, ips, routes, podside.pick_dns(conf.dns, ipam.dns))


def delete(req: Request) -> None:
    conf = parse_conf(req)
    prev = prev_result(req) if req.prev_result else None
    found = podside.remove_pod_link(req)
    if conf.ip_masq:
        podside.release_masq(req, found, prev)
    if conf.macspoofchk:
        for port, mac in spoofchk.owned_by(req.network, req.container_id):
            spoofchk.remove(port, mac)
    if conf.has_ipam:
        delegate.ipam_del(req)


def check(req: Request) -> None:
    conf = parse_conf(req)
    prev = prev_result(req)
    if prev is None:
        raise config_error("prevResult", "CHECK needs the ADD result")
    with open_rtnl() as host:
        br = host.link(conf.bridge)
        if br is None or br.kind != "bridge":
            raise CheckFailed(f"bridge {conf.bridge!r} not found")
        with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
            cv = pod.link(req.ifname)
            if cv is None:
                raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
            hv = link.host_peer_of(host, cv)
            if hv is None or hv.master != br.index:
                raise CheckFailed(f"{req.ifname!r} is not attached to bridge {conf.bridge!r}")
            podside.check_mac(cv, prev, req)
            podside.check_addresses_and_routes(pod, cv, prev, req)
    if conf.has_ipam:
        delegate.ipam_check(req)


def status(req: Request) -> None:
    if parse_conf(req).has_ipam:
        delegate.ipam_status(req)


def gc(req: Request) -> None:
    conf = parse_conf(req)
    valid = {cid for cid, _ in valid_attachments(req)}
    if conf.ip_masq:
        masq.remove(masq.owned_by(req.network, keep=valid))
    if conf.has_ipam:
        delegate.ipam_gc(req)


PLUGIN = Plugin("bridge", add, delete, check, status, gc)
