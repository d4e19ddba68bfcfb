"""podnet-dhcp: IPAM from the underlay's DHCP server (config-compatible with the reference
`dhcp` plugin: `request`, `provide`, `daemonSocketPath`, `priority`).

The exchange runs in the agent, inside the pod's netns on the pod's interface, and the
agent's lease keeper renews the lease for the pod's whole life (the reference needs a
separate `dhcp daemon` for that).  Without an agent ADD fails with code 11 — a lease
nobody renews would silently expire under a running pod.  DEL works either way: the
lease's state file is enough to send DHCPRELEASE.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, IPConfig, Result, Route
from ..dhcp import DEFAULT_REQUEST
from .common import prev_result, valid_attachments
from .errors import CheckFailed, NotAvailable, TryAgain

DEFAULT_STATE_DIR = "/var/lib/podnet"
DEFAULT_TIMEOUT = 10.0
# dhcp-options(5) names the reference accepts, plus any option number
OPTION_NAMES = {"dhcp-client-identifier": 61, "subnet-mask": 1, "routers": 3, "host-name": 12,
                "user-class": 77, "vendor-class-identifier": 60, "domain-name-servers": 6, "domain-name": 15,
                "classless-static-routes": 121, "static-routes": 33}
CLIENT_ID = 61


@dataclass(frozen=True)
class DhcpConf:
    provide: tuple[tuple[int, bytes], ...]
    request: tuple[int, ...]
    timeout: float
    wire_id: bytes | None


def _option(raw: Any, field: str) -> int:
    if isinstance(raw, str) and raw in OPTION_NAMES:
        return OPTION_NAMES[raw]
    try:
        code = int(str(raw))
    except ValueError:
        raise config_error(field, f"unknown DHCP option {raw!r} (a dhcp-options(5) name or a number)") from None
    if not 1 <= code <= 254:
        raise config_error(field, f"DHCP option {code} is out of range 1-254")
    return code


def parse_conf(req: Request) -> DhcpConf:
    ipam = req.config.get("ipam") or {}
    if not isinstance(ipam, dict):
        raise config_error("ipam", f"must be an object, not {ipam!r}")
    for key in ("provide", "request"):
        if not isinstance(ipam.get(key) or [], list):
            raise config_error(f"ipam.{key}", f"must be a list, not {ipam[key]!r}")
    provide: list[tuple[int, bytes]] = []
    wire_id = None
    for i, p in enumerate(ipam.get("provide") or []):
        field = f"ipam.provide[{i}]"
        if not isinstance(p, dict):
            raise config_error(field, "must be an object {option, value | fromArg}")
        code = _option(p.get("option"), f"{field}.option")
        if p.get("fromArg"):
            value = req.args.get(str(p["fromArg"]))
            if value is None:
                raise config_error(f"{field}.fromArg", f"CNI_ARGS has no {p['fromArg']}")
        elif isinstance(p.get("value"), str):
            value = p["value"]
        else:
            raise config_error(field, "needs a string value or fromArg")
        if code == CLIENT_ID:
            wire_id = value.encode()
        else:
            provide.append((code, value.encode()))
    request = list(DEFAULT_REQUEST)
    for i, r in enumerate(ipam.get("request") or []):
        field = f"ipam.request[{i}]"
        if not isinstance(r, dict):
            raise config_error(field, "must be an object {option, skipDefault}")
        if r.get("skipDefault"):
            request = [1, 3]                # the address needs its mask; the result its gateway
        if r.get("option") is not None:
            code = _option(r["option"], f"{field}.option")
            if code not in request:
                request.append(code)
    timeout = ipam.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
        raise config_error("ipam.timeout", f"seconds to wait for a DHCP server (0-120], not {timeout!r}")
    return DhcpConf(tuple(provide), tuple(request), float(timeout), wire_id)


def _keeper(required: bool):  # type: ignore[no-untyped-def]
    from ..dhcp import keeper
    k = keeper.current()
    if k is None and required:
        raise TryAgain("podnet-dhcp needs the podnet agent: it renews the lease for the pod's "
                                        "life (start `podnet agent`, or set agentSocket)")
    return k or keeper.LeaseKeeper(DEFAULT_STATE_DIR)


def result_of(req: Request, lease: Any) -> Result:
    iface = ipaddress.ip_interface(f"{lease.ip}/{lease.prefixlen}")
    gw = ipaddress.ip_address(lease.routers[0]) if lease.routers else None
    routes = [Route(ipaddress.ip_network(dst, strict=False), ipaddress.ip_address(g)) for dst, g in lease.routes]
    if not lease.routes and gw is not None:       # RFC 3442: option 121 replaces the router's default route
        routes.append(Route(ipaddress.ip_network("0.0.0.0/0"), gw))
    return Result(req.cni_version, (), (IPConfig(iface, gw),), tuple(routes),
                  DNS(tuple(lease.dns), lease.domain))


def add(req: Request) -> Result:
    conf = parse_conf(req)
    keeper = _keeper(required=True)
    if not req.netns:
        raise config_error("CNI_NETNS", "podnet-dhcp runs the exchange inside the pod's netns: it is required")
    from ..dhcp.client import NoAnswer
    try:
        lease = keeper.acquire(req.network, req.container_id, req.ifname, req.netns, list(conf.provide),
                               conf.request, conf.timeout, conf.wire_id)
    except NoAnswer:
        raise TryAgain(f"podnet-dhcp: no DHCP server answered on {req.ifname} within "
                                        f"{conf.timeout:.0f}s") from None
    return result_of(req, lease)


def delete(req: Request) -> None:
    from ..dhcp.keeper import client_id
    _keeper(required=False).release(client_id(req.container_id, req.network, req.ifname))


def check(req: Request) -> None:
    import time

    from ..dhcp.keeper import client_id
    lease = _keeper(required=True).get(client_id(req.container_id, req.network, req.ifname))
    if lease is None or lease.expires <= time.time():
        raise CheckFailed(f"podnet-dhcp: no live lease for {req.container_id}/{req.ifname}")
    prev = prev_result(req)
    if prev is not None and prev.ips and str(prev.ips[0].address.ip) != lease.ip:
        raise CheckFailed(f"podnet-dhcp: the lease is for {lease.ip}, prevResult says {prev.ips[0].address.ip}")


def status(req: Request) -> None:
    from ..dhcp import keeper
    if keeper.current() is None:
        raise NotAvailable("podnet-dhcp: the podnet agent (which keeps DHCP leases) is not running")


def gc(req: Request) -> None:
    keep = valid_attachments(req)
    k = _keeper(required=False)
    for lease in k.leases():
        if lease.network == req.network and (lease.container_id, lease.ifname) not in keep \
                and (lease.container_id, "") not in keep:
            k.release(lease.client_id)


PLUGIN = Plugin("dhcp", add, delete, check, status, gc)
