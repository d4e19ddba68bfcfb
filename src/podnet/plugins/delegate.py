"""Delegation to an IPAM plugin: in-process for podnet types, exec for any other.

The spec has the upper plugin exec the IPAM binary with the same env and the whole
config; a `podnet-*` IPAM is the same code we already have loaded, so it is called
directly (identical behaviour, no fork).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from contextvars import ContextVar

from ..cni.invoke import exec_plugin
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from .common import ipam_conf

PREFIX = "podnet-"
log = logging.getLogger(__name__)
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

# Called with a pod's addresses the moment IPAM has given them, before any plugin puts them on an
# interface: dispatch/admission.py programs the pod's NetworkPolicy here, so not one packet of it
# crosses unpoliced (set per request; a thread's context starts without one).
addresses_given: ContextVar[Callable[[list[IPAddr]], None] | None] = ContextVar("addresses_given", default=None)


def _local(ipam_type: str) -> Plugin | None:
    from . import REGISTRY
    if ipam_type.startswith(PREFIX):
        return REGISTRY.get(ipam_type[len(PREFIX):])
    return None


def _call(req: Request, command: str) -> Result | None:
    ipam = ipam_conf(req.config)
    assert ipam is not None
    plugin = _local(ipam["type"])
    sub = dataclasses.replace(req, command=command)
    if plugin is not None:
        if command == "ADD":
            return plugin.add(sub)
        fn = {"DEL": plugin.delete, "CHECK": plugin.check, "STATUS": plugin.status, "GC": plugin.gc}[command]
        if fn is not None:
            fn(sub)
        return None
    env = dict(req.env)
    return exec_plugin(ipam["type"], env, req.config, command, req.path)


def ipam_add(req: Request) -> Result:
    """IPAM's ADD, then the addresses_given hook; when the hook refuses the addresses, IPAM's
    DEL releases them before the refusal goes up (the caller has not yet taken them)."""
    res = _call(req, "ADD")
    assert res is not None
    hook = addresses_given.get()
    if hook is not None and res.ips:
        try:
            hook([i.address.ip for i in res.ips])
        except BaseException:
            try:
                ipam_del(req)
            except Exception as e:  # noqa: BLE001 - the hook's refusal is what the runtime must see
                log.warning("releasing the addresses of a refused ADD: %s", e)
            raise
    return res


def ipam_del(req: Request) -> None:
    _call(req, "DEL")


def ipam_check(req: Request) -> None:
    _call(req, "CHECK")


def ipam_status(req: Request) -> None:
    _call(req, "STATUS")


def ipam_gc(req: Request) -> None:
    _call(req, "GC")
