"""podnet-macvlan: a macvlan link on a host (or pod) interface, moved into the pod.

Config as the reference: master (default: the default route's interface), mode, mtu,
mac, linkInContainer; IPAM optional (without it the link is L2 only, up).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Result, dns_from_dict
from ..net.rtnl import Link, Rtnl
from . import lowerdev, podlink
from .common import check_mac, get_bool, get_int, get_str, ipam_conf, requested_mac
from .errors import CheckFailed

MODES = ("bridge", "private", "vepa", "passthru")


@dataclass(frozen=True)
class MacvlanConf:
    master: str
    mode: str
    mtu: int
    mac: str
    in_container: bool
    has_ipam: bool
    dns: DNS


def parse_conf(req: Request) -> MacvlanConf:
    c = req.config
    mode = get_str(c, "mode", "bridge") or "bridge"
    if mode not in MODES:
        raise config_error("mode", f"unknown macvlan mode {mode!r} (one of {', '.join(MODES)})")
    if get_int(c, "bcqueuelen", 0, 0):
        raise config_error("bcqueuelen", "setting the broadcast queue length is not supported by podnet yet")
    mac = requested_mac(req) or (check_mac(get_str(c, "mac"), "mac") if get_str(c, "mac") else "")
    return MacvlanConf(master=lowerdev.master_name(c), mode=mode, mtu=get_int(c, "mtu", 0, 0, 65535), mac=mac,
                       in_container=get_bool(c, "linkInContainer"), has_ipam=ipam_conf(c) is not None,
                       dns=dns_from_dict(c.get("dns")))


def add(req: Request) -> Result:
    conf = parse_conf(req)

    make = lowerdev.link_on_master(req.ifname, conf.master, conf.mtu, conf.in_container, "macvlan",
                                   macvlan_mode=conf.mode, address=conf.mac or None)
    return podlink.attach(req, make, conf.has_ipam, conf.dns, adopt_ipam_mac=not conf.mac)


def delete(req: Request) -> None:
    podlink.detach(req, parse_conf(req).has_ipam)


def check(req: Request) -> None:
    conf = parse_conf(req)

    def verify(host: Rtnl, pod: Rtnl, lk: Link) -> None:
        mode = lk.info_value("IFLA_MACVLAN_MODE")
        if mode != conf.mode:
            raise CheckFailed(f"{req.ifname!r} is in macvlan mode {mode}, config says {conf.mode}")
        master = lowerdev.master_of(host, pod, lk, conf.in_container)
        want = conf.master or lowerdev.default_route_link(pod if conf.in_container else host)
        if master is None or master.name != want:
            raise CheckFailed(f"{req.ifname!r} hangs off {master.name if master else 'nothing'}, not {want}")

    podlink.check(req, "macvlan", conf.has_ipam, verify)


status, gc = podlink.ipam_status_and_gc(lambda req: parse_conf(req).has_ipam)


PLUGIN = Plugin("macvlan", add, delete, check, status, gc)
