"""podnet-static: fixed addresses from the config, CNI_ARGS, args or runtimeConfig."""
from __future__ import annotations

import ipaddress
from typing import Any

from ..cni.errors import CNIError, config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, IPConfig, Result, dns_from_dict
from .host_local import parse_routes

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _iface(value: Any, field: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(value, str) or "/" not in value:
        raise config_error(field, f"{value!r} is not an address with a prefix length")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise config_error(field, f"invalid address {value!r}") from None


def _gw(value: Any, field: str) -> IPAddr | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise config_error(field, f"must be an IP address string, not {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise config_error(field, f"invalid gateway {value!r}") from None


def addresses(req: Request) -> tuple[IPConfig, ...]:
    ipam = req.config.get("ipam")
    if not isinstance(ipam, dict):
        raise config_error("ipam", "missing IPAM configuration")
    out: list[IPConfig] = []
    raw = ipam.get("addresses") or []
    if not isinstance(raw, list):
        raise config_error("ipam.addresses", "must be a list")
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            raise config_error(f"ipam.addresses[{i}]", "must be an object")
        iface = _iface(a.get("address"), f"ipam.addresses[{i}].address")
        gw = _gw(a.get("gateway"), f"ipam.addresses[{i}].gateway")
        if gw is not None and gw.version != iface.version:
            raise config_error(f"ipam.addresses[{i}].gateway", f"{gw} is IPv{gw.version}, the address {iface} "
                                                               f"is IPv{iface.version}")
        out.append(IPConfig(iface, gw))
    gws = [_gw(g, "CNI_ARGS GATEWAY") for g in req.args.get("GATEWAY", "").split(",") if g]
    for s in filter(None, req.args.get("IP", "").split(",")):
        ip = _iface(s, "CNI_ARGS IP")
        gw = next((g for g in gws if g is not None and g.version == ip.version and g in ip.network), None)
        out.append(IPConfig(ip, gw))
    args = req.config.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict):
        out += [IPConfig(_iface(s, "args.cni.ips")) for s in args["cni"].get("ips") or []]
    out += [IPConfig(_iface(s, "runtimeConfig.ips")) for s in req.runtime_config.get("ips") or []]
    if not out:
        raise config_error("ipam.addresses", "no addresses given (config, CNI_ARGS IP, args or runtimeConfig)")
    return tuple(out)


def add(req: Request) -> Result:
    ipam = req.config["ipam"] if isinstance(req.config.get("ipam"), dict) else {}
    ips = addresses(req)
    dns: DNS = dns_from_dict(ipam.get("dns"))
    return Result(req.cni_version, (), ips, parse_routes(ipam.get("routes"), "ipam.routes"), dns)


def delete(req: Request) -> None:
    """Nothing is stored, so nothing to release; bad config still errors (as validation)."""
    try:
        addresses(req)
    except CNIError:
        pass  # DEL must succeed even with a config we could not use for ADD


def check(req: Request) -> None:
    addresses(req)


PLUGIN = Plugin("static", add, delete, check, check, None)
