"""The leg (chained after macvlan/ipvlan, or the `podnet` plugin's underlay modes): a veth from
the pod to its own node carrying what must go through the node — the node's own addresses,
the service CIDR, whatever else `routes` lists — while eth0 stays on the datacenter network.
The kernel side is net/leg.py (which says why each piece is there).

    {"type": "podnet-leg", "prevResult": …,
     "ifname": "leg0",                 the leg's name in the pod
     "routes": ["10.96.0.0/12"],       destinations routed through the node (besides its own addresses)
     "master": "eth0",                 the node's uplink: its addresses are the node's (default: the
                                       default route's interface); or
     "nodeIPs": ["10.0.0.11"],         the node's addresses, given
     "mtu": 1500}

The pod's addresses come from prevResult (the interface CNI_IFNAME names); the result is
prevResult plus the leg's two interfaces.  DEL removes the leg (its host end and host routes go
with it) and the pod's reply routing; nothing to do when the netns is gone.
"""
from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Interface, Result
from ..net import leg, link, netns, sysctl
from ..net.errors import LinkExists, NetnsGone
from ..net.rtnl import Rtnl, open_rtnl
from . import lowerdev, podside
from .common import check_link_name, get_int, get_str, require_prev_result
from .errors import CheckFailed

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_IFNAME = "leg0"


@dataclass(frozen=True)
class LegConf:
    ifname: str
    routes: tuple[IPNet, ...]
    master: str
    node_ips: tuple[IPAddr, ...]
    mtu: int


def _list(c: dict[str, object], key: str) -> list[str]:
    raw = c.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise config_error(key, f"must be a list of strings, not {raw!r}")
    return list(raw)


def parse_conf(req: Request) -> LegConf:
    c = req.config
    ifname = check_link_name(get_str(c, "ifname", DEFAULT_IFNAME) or DEFAULT_IFNAME, "ifname")
    if ifname == req.ifname:
        raise config_error("ifname", f"the leg cannot take the pod interface's own name {ifname!r}")
    try:
        routes = tuple(ipaddress.ip_network(r) for r in _list(c, "routes"))
    except ValueError as e:
        raise config_error("routes", str(e)) from None
    try:
        node_ips = tuple(ipaddress.ip_address(a) for a in _list(c, "nodeIPs"))
    except ValueError as e:
        raise config_error("nodeIPs", str(e)) from None
    return LegConf(ifname, routes, lowerdev.master_name(c), node_ips, get_int(c, "mtu", 0, 0, 65535))


def node_addresses(host: Rtnl, conf: LegConf) -> dict[int, IPAddr]:
    """The node's own address per family: given, or the first global address of its uplink."""
    if conf.node_ips:
        for ip in conf.node_ips:
            if host.link_holding(ip) is None:
                raise config_error("nodeIPs", f"{ip} is not an address of this node")
        return {ip.version: ip for ip in reversed(conf.node_ips)}
    name = conf.master or lowerdev.default_route_link(host)
    up = host.link(name)
    if up is None:
        raise config_error("master", f"the node's uplink {name!r} not found: give master or nodeIPs")
    out: dict[int, IPAddr] = {}
    for a in host.addrs(up.index):
        if not a.ip.is_link_local and a.version not in out:
            out[a.version] = a.ip
    if not out:
        raise config_error("nodeIPs", f"the node's uplink {name!r} has no address: give nodeIPs")
    return out


def pod_addresses(prev: Result, req: Request) -> list[IPAddr]:
    return [a.ip for a in podside.interface_ips(prev, req.ifname)]


def add(req: Request) -> Result:
    conf = parse_conf(req)
    prev = require_prev_result(req, "leg")
    ips = pod_addresses(prev, req)
    if not ips:
        raise config_error("prevResult", f"no address of {req.ifname} to route the leg to")
    with contextlib.ExitStack() as undo:
        pod_fd = undo.enter_context(netns.opened(req.netns))
        host = undo.enter_context(open_rtnl())
        pod = undo.enter_context(open_rtnl(pod_fd))
        node_ips = node_addresses(host, conf)
        try:
            hv, cv = link.make_veth_into(host, pod, pod_fd, conf.ifname, conf.mtu, prefix=leg.HOST_PREFIX)
        except LinkExists:
            raise config_error("ifname", f"interface {conf.ifname!r} already exists in {req.netns}") from None
        undo.callback(podside.quietly, pod.del_link, cv.index)
        undo.callback(podside.quietly, leg.remove_pod_side, pod, pod_fd)
        if not any(ip.version == 6 for ip in ips):
            podside.host_end_without_ipv6(hv.name, ())
        for fam in {ip.version for ip in ips}:      # the node forwards what legs carry (Services, hostPorts)
            sysctl.ensure("net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding", 1)
        leg.host_side(host, hv, ips, node_ips)
        routed = [ipaddress.ip_network(f"{a}/{a.max_prefixlen}") for a in node_ips.values()] + list(conf.routes)
        leg.pod_side(pod, pod_fd, cv, ips, routed)
        undo.pop_all()
    return Result(prev.cni_version, (*prev.interfaces, Interface(hv.name, hv.mac),
                                     Interface(cv.name, cv.mac, sandbox=req.netns)),
                  prev.ips, prev.routes, prev.dns)


def delete(req: Request) -> None:
    conf = parse_conf(req)
    if not req.netns:
        return
    try:
        with netns.opened(req.netns) as pod_fd, open_rtnl(pod_fd) as pod:
            cv = pod.link(conf.ifname)
            if cv is None:
                return
            leg.remove_pod_side(pod, pod_fd)
            podside.delete_link(pod, cv)       # its host end and the host routes go with it
    except NetnsGone:
        pass


def check(req: Request) -> None:
    conf = parse_conf(req)
    prev = require_prev_result(req, "leg")
    with netns.opened(req.netns) as pod_fd, open_rtnl() as host, open_rtnl(pod_fd) as pod:
        cv = pod.link(conf.ifname)
        if cv is None:
            raise CheckFailed(f"the leg {conf.ifname!r} is gone from {req.netns}")
        hv = link.host_peer_of(host, cv)
        if hv is None:
            raise CheckFailed(f"the host end of the leg {conf.ifname!r} is gone")
        have = {(r.dst, r.oif) for fam in (4, 6) for r in host.routes(fam)}
        for ip in pod_addresses(prev, req):
            if (ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}"), hv.index) not in have:
                raise CheckFailed(f"the node's route to {ip} through the leg {hv.name} is missing")
        if not leg.has_reply_routing(pod_fd):
            raise CheckFailed(f"the pod's reply routing for the leg ({leg.NFT_TABLE}) is missing")


PLUGIN = Plugin("leg", add, delete, check)
