"""podnet-dummy: a dummy link in the pod carrying IPAM addresses (the reference `dummy`)."""
from __future__ import annotations

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result, dns_from_dict
from ..net import link
from ..net.rtnl import Link, Rtnl
from . import delegate, podlink
from .common import ipam_conf


def require_ipam(req: Request) -> None:
    if ipam_conf(req.config) is None:
        raise config_error("ipam", "dummy interface requires an IPAM configuration")


def add(req: Request) -> Result:
    require_ipam(req)

    def make(host: Rtnl, pod: Rtnl, pod_fd: int) -> Link:
        return link.create_in_pod(pod, pod, pod_fd, req.ifname, "dummy")

    return podlink.attach(req, make, True, dns_from_dict(req.config.get("dns")))


def delete(req: Request) -> None:
    require_ipam(req)
    podlink.detach(req, True)


def check(req: Request) -> None:
    require_ipam(req)
    podlink.check(req, "dummy", True, lambda host, pod, lk: None)


def status(req: Request) -> None:
    require_ipam(req)
    delegate.ipam_status(req)


def gc(req: Request) -> None:
    require_ipam(req)
    delegate.ipam_gc(req)


PLUGIN = Plugin("dummy", add, delete, check, status, gc)
