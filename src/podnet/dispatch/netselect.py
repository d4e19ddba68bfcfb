"""The Network Plumbing Working Group's pod annotations (what Multus users write), parsed and
rendered: `k8s.v1.cni.cncf.io/networks` in, `k8s.v1.cni.cncf.io/network-status` out.

  networks        a comma list of `[namespace/]name[@ifname]`, or a JSON list of
                  {name, namespace, interface, ips, mac, default-route, portMappings, bandwidth,
                   cni-args}; interfaces default to net1, net2, … in list order
  network-status  a JSON list of {name, interface, ips, mac, default, dns}: the cluster network
                  first (default: true), then each attachment
Pure: no API, no kernel.  Errors are ValueError with the element and field named.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..cni.request import bad_link_name

NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")      # a DNS-1123 subdomain: a NAD's name or namespace


@dataclass(frozen=True)
class Selection:
    """One attachment a pod asks for."""
    name: str
    namespace: str
    interface: str
    ips: tuple[str, ...] = ()
    mac: str = ""
    default_route: tuple[str, ...] = ()
    port_mappings: tuple[dict[str, Any], ...] = ()
    bandwidth: dict[str, Any] = field(default_factory=dict)
    cni_args: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse(annotation: str, pod_namespace: str) -> list[Selection]:
    """The annotation's attachments, in order, interfaces named; ValueError names what is wrong."""
    text = annotation.strip()
    if not text:
        return []
    raw = _json_list(text) if text[0] in "[{" else _text_list(text)
    out: list[Selection] = []
    for i, item in enumerate(raw):
        sel = _element(item, i, pod_namespace)
        out.append(sel)
    names = [s.interface for s in out]
    dup = next((n for n in names if names.count(n) > 1), "")
    if dup:
        raise ValueError(f"{NETWORKS}: interface {dup!r} is asked for twice")
    return out


def _text_list(text: str) -> list[dict[str, Any]]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"{NETWORKS}: an empty entry in {text!r}")
        ref, _, ifname = part.partition("@")
        ns, _, name = ref.rpartition("/")
        out.append({"name": name, **({"namespace": ns} if ns else {}), **({"interface": ifname} if ifname else {})})
    return out


def _json_list(text: str) -> list[Any]:
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{NETWORKS}: not a JSON list: {e}") from None
    if not isinstance(raw, list):
        raise ValueError(f"{NETWORKS}: a JSON value that is not a list")
    return raw


def _element(item: Any, i: int, pod_namespace: str) -> Selection:
    where = f"{NETWORKS}[{i}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object with a name")
    name, ns = item.get("name"), item.get("namespace") or pod_namespace
    for key, value in (("name", name), ("namespace", ns)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise ValueError(f"{where}.{key}: {value!r} is not a NetworkAttachmentDefinition {key}")
    ifname = item.get("interface") or f"net{i + 1}"
    if not isinstance(ifname, str) or bad_link_name(ifname):
        raise ValueError(f"{where}.interface: {ifname!r} is not an interface name ({bad_link_name(str(ifname))})")
    ips = _strings(item, "ips", where)
    for ip in ips:
        try:
            ipaddress.ip_interface(ip)
        except ValueError:
            raise ValueError(f"{where}.ips: {ip!r} is not an address") from None
    routes = _strings(item, "default-route", where)
    for gw in routes:
        try:
            ipaddress.ip_address(gw)
        except ValueError:
            raise ValueError(f"{where}.default-route: {gw!r} is not a gateway address") from None
    mac = item.get("mac") or ""
    if not isinstance(mac, str) or (mac and not re.fullmatch(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", mac)):
        raise ValueError(f"{where}.mac: {mac!r} is not a MAC address")
    pms = item.get("portMappings") or []
    if not isinstance(pms, list) or not all(isinstance(p, dict) for p in pms):
        raise ValueError(f"{where}.portMappings: must be a list of objects")
    for key in ("bandwidth", "cni-args"):
        if item.get(key) is not None and not isinstance(item[key], dict):
            raise ValueError(f"{where}.{key}: must be an object")
    return Selection(str(name), str(ns), ifname, tuple(ips), mac.lower(), tuple(routes), tuple(pms),
                     dict(item.get("bandwidth") or {}), dict(item.get("cni-args") or {}))


def _strings(item: dict[str, Any], key: str, where: str) -> list[str]:
    raw = item.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"{where}.{key}: must be a list of strings")
    return list(raw)


def status_entry(name: str, interface: str, result: dict[str, Any], sandbox: str, default: bool) -> dict[str, Any]:
    """One network-status element from a CNI result (rendered in 1.0 form): the addresses of the
    pod's `interface`, its MAC and the result's DNS."""
    ifaces = result.get("interfaces") or []
    index = next((i for i, x in enumerate(ifaces) if x.get("name") == interface and x.get("sandbox") == sandbox), None)
    ips = [str(ipaddress.ip_interface(x["address"]).ip) for x in result.get("ips") or []
           if index is None or x.get("interface") in (index, None)]
    entry: dict[str, Any] = {"name": name, "interface": interface, "ips": ips}
    if index is not None and ifaces[index].get("mac"):
        entry["mac"] = ifaces[index]["mac"]
    if default:
        entry["default"] = True
    dns = {k: v for k, v in (result.get("dns") or {}).items() if v}
    if dns:
        entry["dns"] = dns
    return entry
