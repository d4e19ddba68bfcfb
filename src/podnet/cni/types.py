"""CNI result types in their newest (1.1.0) shape; convert.py renders other versions."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import DECODE_FAILURE, CNIError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass(frozen=True)
class Result:
    cni_version: str = "1.1.0"
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    def with_(self, **changes: Any) -> Result:
        return replace(self, **changes)


def parse_ip(value: Any, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise CNIError(DECODE_FAILURE, f"{what}: invalid IP address {value!r}") from None


def parse_cidr(value: Any, what: str) -> IPInterface:
    """An address with its prefix length ('10.1.2.3/24'), host bits allowed."""
    if not isinstance(value, str) or "/" not in value:
        raise CNIError(DECODE_FAILURE, f"{what}: invalid CIDR {value!r}")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise CNIError(DECODE_FAILURE, f"{what}: invalid CIDR {value!r}") from None


def parse_net(value: Any, what: str) -> IPNetwork:
    """A network; host bits are masked off as Go's net.ParseCIDR does for route dsts."""
    return parse_cidr(value, what).network


def dns_from_dict(d: Any) -> DNS:
    if not isinstance(d, dict):
        return DNS()
    return DNS(tuple(d.get("nameservers") or ()), d.get("domain") or "",
               tuple(d.get("search") or ()), tuple(d.get("options") or ()))


def dns_to_dict(dns: DNS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out
