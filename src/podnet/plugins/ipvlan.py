"""podnet-ipvlan: an ipvlan link (l2, l3, l3s) on a master, moved into the pod.

Like the reference it can be chained: without IPAM it takes the addresses from
prevResult, and the master may be prevResult's single interface.  No custom MAC:
ipvlan links share their master's.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Result, dns_from_dict
from ..net.rtnl import Link, Rtnl
from . import lowerdev, podlink
from .common import get_bool, get_int, get_str, ipam_conf, prev_result
from .errors import CheckFailed

MODES = {"l2": 0, "l3": 1, "l3s": 2}


@dataclass(frozen=True)
class IpvlanConf:
    master: str
    mode: str
    mtu: int
    in_container: bool
    has_ipam: bool
    dns: DNS


def parse_conf(req: Request) -> IpvlanConf:
    c = req.config
    mode = get_str(c, "mode", "l2") or "l2"
    if mode not in MODES:
        raise config_error("mode", f"unknown ipvlan mode {mode!r} (one of {', '.join(MODES)})")
    return IpvlanConf(master=lowerdev.master_name(c), mode=mode, mtu=get_int(c, "mtu", 0, 0, 65535),
                      in_container=get_bool(c, "linkInContainer"), has_ipam=ipam_conf(c) is not None,
                      dns=dns_from_dict(c.get("dns")))


def chained_input(req: Request, conf: IpvlanConf) -> tuple[Result | None, str]:
    """(prevResult to take addresses from, master name) for an ipvlan without IPAM."""
    if conf.has_ipam:
        return None, conf.master
    prev = prev_result(req)
    if prev is None:
        raise config_error("ipam", "ipvlan without IPAM must be chained: it takes its addresses from prevResult")
    if not prev.ips:
        raise config_error("prevResult", "ipvlan without IPAM needs addresses in prevResult")
    master = conf.master
    if not master and len(prev.interfaces) == 1:
        master = prev.interfaces[0].name
    return prev, master


def add(req: Request) -> Result:
    conf = parse_conf(req)
    prev, master_name = chained_input(req, conf)

    make = lowerdev.link_on_master(req.ifname, master_name, conf.mtu, conf.in_container, "ipvlan",
                                   ipvlan_mode=MODES[conf.mode])
    return podlink.attach(req, make, conf.has_ipam, conf.dns, ips_from=prev)


def delete(req: Request) -> None:
    podlink.detach(req, parse_conf(req).has_ipam)


def check(req: Request) -> None:
    conf = parse_conf(req)

    def verify(host: Rtnl, pod: Rtnl, lk: Link) -> None:
        mode = lk.info_value("IFLA_IPVLAN_MODE")
        if mode != MODES[conf.mode]:
            raise CheckFailed(f"{req.ifname!r} is in ipvlan mode {mode}, config says {conf.mode}")
        if conf.master:
            master = lowerdev.master_of(host, pod, lk, conf.in_container)
            if master is None or master.name != conf.master:
                raise CheckFailed(f"{req.ifname!r} does not hang off {conf.master}")

    podlink.check(req, "ipvlan", conf.has_ipam, verify)


status, gc = podlink.ipam_status_and_gc(lambda req: parse_conf(req).has_ipam)


PLUGIN = Plugin("ipvlan", add, delete, check, status, gc)
