"""podnet-firewall: per-pod accepts and bridge isolation on nftables (the reference `firewall`).

`ingressPolicy`: open (default) | same-bridge (no traffic from other isolated bridges) |
isolated (not even between pods of the same bridge).  The bridge is prevResult's first
interface, as in the reference.  `backend` may say iptables or firewalld: podnet
always uses nftables; `iptablesAdminChainName` names the user chain consulted first.
"""
from __future__ import annotations

import re

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from ..net import firewall_nft as fw
from ..net import nft
from .common import check_link_name, get_str, require_prev_result, valid_attachments
from .errors import CheckFailed, NotAvailable

POLICIES = ("open", "same-bridge", "isolated")
_CHAIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


def parse_conf(req: Request) -> tuple[str, str]:
    c = req.config
    policy = get_str(c, "ingressPolicy", "open") or "open"
    if policy not in POLICIES:
        raise config_error("ingressPolicy", f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    backend = get_str(c, "backend")
    if backend not in ("", "iptables", "firewalld", "nftables"):
        raise config_error("backend", f"unknown backend {backend!r}")
    admin = get_str(c, "iptablesAdminChainName", "CNI-ADMIN") or "CNI-ADMIN"
    if not _CHAIN_RE.match(admin):
        raise config_error("iptablesAdminChainName", f"{admin!r} is not a valid chain name")
    return policy, admin


def _pod_ips(prev: Result) -> list:  # type: ignore[type-arg]
    return [i.address.ip for i in prev.ips]


def _bridge(prev: Result, policy: str) -> str:
    if policy == "open":
        return ""
    if not prev.interfaces or prev.interfaces[0].sandbox:
        raise config_error("ingressPolicy", f"{policy!r} needs a bridge as prevResult's first interface "
                                            "(chain podnet-firewall after podnet-bridge)")
    return check_link_name(prev.interfaces[0].name, "prevResult.interfaces[0].name")


def _port(prev: Result) -> str:
    """The pod's host veth (podnet-bridge lists it second, without a sandbox)."""
    host_side = [i.name for i in prev.interfaces[1:] if not i.sandbox]
    return check_link_name(host_side[0], "prevResult.interfaces") if host_side else ""


def add(req: Request) -> Result:
    policy, admin = parse_conf(req)
    prev = require_prev_result(req, "firewall")
    fw.add(req.network, req.container_id, _pod_ips(prev), admin, _bridge(prev, policy), policy, _port(prev))
    return prev


def delete(req: Request) -> None:
    fw.remove(req.network, req.container_id)


def check(req: Request) -> None:
    parse_conf(req)
    prev = require_prev_result(req, "firewall")
    for ip in _pod_ips(prev):
        if not fw.has_pod(req.network, req.container_id, ip):
            raise CheckFailed(f"firewall accept rules for {ip} are missing")


def status(req: Request) -> None:
    parse_conf(req)
    if not nft.available():
        raise NotAvailable("nftables is not available on this node")


def gc(req: Request) -> None:
    fw.remove(req.network, None, keep={cid for cid, _ in valid_attachments(req)})


PLUGIN = Plugin("firewall", add, delete, check, status, gc)
