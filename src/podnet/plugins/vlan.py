"""podnet-vlan: an 802.1q sub-interface of a master, moved into the pod (the reference `vlan`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Result, dns_from_dict
from ..net.rtnl import Link, Rtnl
from . import lowerdev, podlink
from .common import get_bool, get_int, ipam_conf
from .errors import CheckFailed


@dataclass(frozen=True)
class VlanConf:
    master: str
    vlan_id: int
    mtu: int
    in_container: bool
    has_ipam: bool
    dns: DNS


def parse_conf(req: Request) -> VlanConf:
    c = req.config
    if "vlanId" not in c:
        raise config_error("vlanId", "missing: the VLAN ID (0-4094) is required")
    master = lowerdev.master_name(c)
    if not master:
        raise config_error("master", "missing: the interface the VLAN rides on is required")
    return VlanConf(master=master, vlan_id=get_int(c, "vlanId", 0, 0, 4094), mtu=get_int(c, "mtu", 0, 0, 65535),
                    in_container=get_bool(c, "linkInContainer"), has_ipam=ipam_conf(c) is not None,
                    dns=dns_from_dict(c.get("dns")))


def add(req: Request) -> Result:
    conf = parse_conf(req)

    make = lowerdev.link_on_master(req.ifname, conf.master, conf.mtu, conf.in_container, "vlan",
                                   vlan_id=conf.vlan_id)
    return podlink.attach(req, make, conf.has_ipam, conf.dns)


def delete(req: Request) -> None:
    podlink.detach(req, parse_conf(req).has_ipam)


def check(req: Request) -> None:
    conf = parse_conf(req)

    def verify(host: Rtnl, pod: Rtnl, lk: Link) -> None:
        vid = lk.info_value("IFLA_VLAN_ID")
        if vid != conf.vlan_id:
            raise CheckFailed(f"{req.ifname!r} has VLAN ID {vid}, config says {conf.vlan_id}")
        master = lowerdev.master_of(host, pod, lk, conf.in_container)
        if master is None or master.name != conf.master:
            raise CheckFailed(f"{req.ifname!r} does not ride on {conf.master}")

    podlink.check(req, "vlan", conf.has_ipam, verify)


status, gc = podlink.ipam_status_and_gc(lambda req: parse_conf(req).has_ipam)


PLUGIN = Plugin("vlan", add, delete, check, status, gc)
