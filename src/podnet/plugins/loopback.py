"""podnet-loopback: brings `lo` up in the pod (containerd calls it for every pod)."""
from __future__ import annotations

from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Interface, IPConfig, Result
from ..net import netns
from ..net.errors import NetnsGone
from ..net.rtnl import open_rtnl
from .common import prev_result
from .errors import CheckFailed


def add(req: Request) -> Result:
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        lo = pod.require_link("lo")
        if not lo.up:
            pod.set_link(lo.index, state="up")
        addrs = pod.addrs(lo.index)
    if any(not a.ip.is_loopback for a in addrs):
        raise CheckFailed("loopback interface has a non-loopback address")
    prev = prev_result(req)
    if prev is not None:
        return prev.with_(cni_version=req.cni_version)
    ips = tuple(IPConfig(address=a, interface=0) for a in addrs)
    return Result(req.cni_version, (Interface("lo", "00:00:00:00:00:00", sandbox=req.netns),), ips)


def delete(req: Request) -> None:
    try:
        with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
            lo = pod.link("lo")
            if lo is not None and lo.up:
                pod.set_link(lo.index, state="down")
    except NetnsGone:
        pass


def check(req: Request) -> None:
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
        if not pod.require_link("lo").up:
            raise CheckFailed("loopback interface is down")


PLUGIN = Plugin("loopback", add, delete, check)
