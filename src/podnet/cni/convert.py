"""Result conversion between CNI versions 0.1.0 … 1.1.0.

Every version is parsed into the 1.1.0-shaped `Result` and rendered from it;
the tables below say which parser and which renderer serve each version.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import version as V
from .errors import DECODE_FAILURE, CNIError
from .types import Interface, IPConfig, Result, Route, dns_from_dict, dns_to_dict, parse_cidr, parse_ip, parse_net

# ---------------------------------------------------------------- parsing

def _parse_route(r: dict[str, Any]) -> Route:
    if not isinstance(r, dict) or "dst" not in r:
        raise CNIError(DECODE_FAILURE, f"invalid route {r!r}")
    return Route(dst=parse_net(r["dst"], "routes.dst"),
                 gw=parse_ip(r["gw"], "routes.gw") if r.get("gw") else None,
                 mtu=int(r.get("mtu") or 0), advmss=int(r.get("advmss") or 0),
                 priority=int(r.get("priority") or 0),
                 table=r.get("table"), scope=r.get("scope"))


def _parse_current(d: dict[str, Any], version: str) -> Result:
    ifaces = tuple(Interface(name=i.get("name", ""), mac=i.get("mac", ""), mtu=int(i.get("mtu") or 0),
                             sandbox=i.get("sandbox", ""), socket_path=i.get("socketPath", ""),
                             pci_id=i.get("pciID", ""))
                   for i in d.get("interfaces") or ())
    ips = tuple(IPConfig(address=parse_cidr(ip.get("address"), "ips.address"),
                         gateway=parse_ip(ip["gateway"], "ips.gateway") if ip.get("gateway") else None,
                         interface=ip.get("interface"))
                for ip in d.get("ips") or ())
    routes = tuple(_parse_route(r) for r in d.get("routes") or ())
    return Result(version, ifaces, ips, routes, dns_from_dict(d.get("dns")))


def _parse_legacy(d: dict[str, Any], version: str) -> Result:
    ips: list[IPConfig] = []
    routes: list[Route] = []
    for key in ("ip4", "ip6"):
        block = d.get(key)
        if not block:
            continue
        ips.append(IPConfig(address=parse_cidr(block.get("ip"), f"{key}.ip"),
                            gateway=parse_ip(block["gateway"], f"{key}.gateway") if block.get("gateway") else None))
        routes.extend(_parse_route(r) for r in block.get("routes") or ())
    return Result(version, (), tuple(ips), tuple(routes), dns_from_dict(d.get("dns")))


# ---------------------------------------------------------------- rendering

def _route_dict(r: Route, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(r.dst)}
    if r.gw is not None:
        out["gw"] = str(r.gw)
    if full:
        for key, val in (("mtu", r.mtu), ("advmss", r.advmss), ("priority", r.priority)):
            if val:
                out[key] = val
        if r.table is not None:
            out["table"] = r.table
        if r.scope is not None:
            out["scope"] = r.scope
    return out


def _render_current(res: Result, version: str) -> dict[str, Any]:
    with_version = V.has_version_field(version)
    newest = V.at_least(version, "1.1.0")
    out: dict[str, Any] = {"cniVersion": version}
    if res.interfaces:
        ifaces = []
        for i in res.interfaces:
            d: dict[str, Any] = {"name": i.name}
            if i.mac:
                d["mac"] = i.mac
            if newest and i.mtu:
                d["mtu"] = i.mtu
            if i.sandbox:
                d["sandbox"] = i.sandbox
            if newest and i.socket_path:
                d["socketPath"] = i.socket_path
            if newest and i.pci_id:
                d["pciID"] = i.pci_id
            ifaces.append(d)
        out["interfaces"] = ifaces
    if res.ips:
        ips = []
        for ip in res.ips:
            d = {"address": str(ip.address)}
            if with_version:
                d = {"version": str(ip.family), **d}
            if ip.gateway is not None:
                d["gateway"] = str(ip.gateway)
            if ip.interface is not None:
                d["interface"] = ip.interface
            ips.append(d)
        out["ips"] = ips
    if res.routes:
        out["routes"] = [_route_dict(r, full=True) for r in res.routes]
    dns = dns_to_dict(res.dns)
    if dns:
        out["dns"] = dns
    return out


def _render_legacy(res: Result, version: str) -> dict[str, Any]:
    first = {4: None, 6: None}  # type: dict[int, IPConfig | None]
    for ip in res.ips:
        if first[ip.family] is None:
            first[ip.family] = ip
    if first[4] is None and first[6] is None:
        raise CNIError(DECODE_FAILURE, "cannot convert: no valid IP addresses")
    out: dict[str, Any] = {"cniVersion": version}
    for fam, key in ((4, "ip4"), (6, "ip6")):
        chosen = first[fam]
        if chosen is None:
            continue
        block: dict[str, Any] = {"ip": str(chosen.address)}
        if chosen.gateway is not None:
            block["gateway"] = str(chosen.gateway)
        routes = [_route_dict(r, full=False) for r in res.routes if r.dst.version == fam]
        if routes:
            block["routes"] = routes
        out[key] = block
    dns = dns_to_dict(res.dns)
    if dns:
        out["dns"] = dns
    return out


Parser = Callable[[dict[str, Any], str], Result]
Renderer = Callable[[Result, str], dict[str, Any]]

PARSERS: dict[str, Parser] = {v: (_parse_legacy if V.is_legacy(v) else _parse_current) for v in V.SUPPORTED}
RENDERERS: dict[str, Renderer] = {v: (_render_legacy if V.is_legacy(v) else _render_current) for v in V.SUPPORTED}


def parse_result(d: Any, version: str | None = None) -> Result:
    """Parse a result dict of any supported version (its own cniVersion wins)."""
    if not isinstance(d, dict):
        raise CNIError(DECODE_FAILURE, "result is not a JSON object")
    ver = d.get("cniVersion") or version or "0.1.0"
    if not isinstance(ver, str):
        raise CNIError(DECODE_FAILURE, f"result cniVersion {ver!r} is not a string")
    V.require_supported(ver)
    try:
        return PARSERS[ver](d, ver)
    except CNIError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError) as e:   # a field of the wrong JSON type
        raise CNIError(DECODE_FAILURE, f"invalid {ver} result: {type(e).__name__}: {e}") from None


def render_result(res: Result, version: str) -> dict[str, Any]:
    """Render a result in `version` (always the config's version)."""
    V.require_supported(version)
    return RENDERERS[version](res, version)

