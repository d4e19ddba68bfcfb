"""podnet-host-device: move an existing host device into the pod (the reference `host-device`).

The device is picked by `device` (name), `hwaddr`, `kernelpath` (/sys/devices/…),
`pciBusID` or runtimeConfig.deviceID (a PCI address).  Its original name goes into the
link alias; DEL renames it back and returns it to the host.  When the pod's netns is
already gone, the kernel has returned a physical device to the init namespace under
whatever name was free; DEL then finds it by that alias and gives the name back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Result, dns_from_dict
from ..net import link, netns
from ..net.errors import NetnsGone
from ..net.rtnl import Link, Rtnl, open_rtnl
from . import podlink, podside
from .common import check_link_name, check_mac, get_str, ipam_conf

PCI_RE = re.compile(r"^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


@dataclass(frozen=True)
class HostDeviceConf:
    device: str
    hwaddr: str
    kernelpath: str
    pci: str
    has_ipam: bool
    dns: DNS


def parse_conf(req: Request) -> HostDeviceConf:
    c = req.config
    device = get_str(c, "device")
    hwaddr = get_str(c, "hwaddr")
    kernelpath = get_str(c, "kernelpath")
    pci = str(req.runtime_config.get("deviceID") or "") or get_str(c, "pciBusID")
    if device:
        check_link_name(device, "device")
    if hwaddr:
        hwaddr = check_mac(hwaddr, "hwaddr")
    if kernelpath and (not kernelpath.startswith("/sys/devices/") or ".." in kernelpath):
        raise config_error("kernelpath", f"{kernelpath!r} must be a path under /sys/devices/")
    if pci and not PCI_RE.match(pci):
        raise config_error("pciBusID", f"{pci!r} is not a PCI address like 0000:00:1f.6")
    if not (device or hwaddr or kernelpath or pci):
        raise config_error("device", 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"')
    return HostDeviceConf(device, hwaddr, kernelpath, pci, ipam_conf(c) is not None,
                          dns_from_dict(c.get("dns")))


def _sysfs_names(conf: HostDeviceConf) -> set[str]:
    """Interface names the kernel lists for the kernelpath / PCI address (empty if unset)."""
    if conf.pci:
        return link.names_at_pci(conf.pci)
    if conf.kernelpath:
        return link.names_under(conf.kernelpath)
    return set()


def find_device(host: Rtnl, conf: HostDeviceConf) -> Link:
    if conf.device:
        lk = host.link(conf.device)
        if lk is None:
            raise config_error("device", f"device {conf.device!r} not found in the host network namespace")
        return lk
    if conf.hwaddr:
        for lk in host.links():
            if lk.mac.lower() == conf.hwaddr:
                return lk
        raise config_error("hwaddr", f"no host device has MAC {conf.hwaddr}")
    names = _sysfs_names(conf)
    for lk in host.links():
        if lk.name in names:
            return lk
    field = "pciBusID" if conf.pci else "kernelpath"
    raise config_error(field, f"no network device found at {conf.pci or conf.kernelpath}")


def _give_back(pod: Rtnl, lk: Link) -> None:
    link.move_out_of_pod(pod, lk, host_netns_fd=None)


def add(req: Request) -> Result:
    conf = parse_conf(req)

    def make(host: Rtnl, pod: Rtnl, pod_fd: int) -> Link:
        dev = find_device(host, conf)
        if pod.link(req.ifname) is not None:  # before moving anything
            raise config_error("CNI_IFNAME", f"interface {req.ifname!r} already exists in {req.netns}")
        return link.move_into_pod(host, pod, pod_fd, dev, req.ifname)

    return podlink.attach(req, make, conf.has_ipam, conf.dns, unmake=_give_back)


def _rename_returned_device(conf: HostDeviceConf) -> None:
    """The pod netns is gone: a physical device came back under some other name."""
    with open_rtnl() as host:
        names = _sysfs_names(conf)
        for lk in host.links():
            if not lk.alias or lk.alias == lk.name:
                continue
            if lk.alias == conf.device or lk.mac.lower() == conf.hwaddr or lk.name in names:
                if host.link(lk.alias) is None:
                    host.set_link(lk.index, state="down")
                    host.set_link(lk.index, ifname=lk.alias)
                return


def delete(req: Request) -> None:
    conf = parse_conf(req)
    gone = not req.netns
    if not gone:
        try:
            with netns.opened(req.netns):
                pass
        except NetnsGone:
            gone = True
    podlink.detach(req, conf.has_ipam, unmake=_give_back)
    if gone:
        podside.quietly(_rename_returned_device, conf)


def check(req: Request) -> None:
    conf = parse_conf(req)
    podlink.check(req, "", conf.has_ipam, lambda host, pod, lk: None)


status, gc = podlink.ipam_status_and_gc(lambda req: parse_conf(req).has_ipam)


PLUGIN = Plugin("host-device", add, delete, check, status, gc)
