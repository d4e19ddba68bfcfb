"""The cluster IPAM's data: pools (a CIDR cut into blocks) and blocks (one node's slice, with
its allocations and the addresses resting after release), as they are stored in etcd.
Pure values and JSON; the transactions that change them live in cluster.py.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_BLOCK = {4: 26, 6: 122}


@dataclass(frozen=True)
class Pool:
    name: str
    cidr: IPNet
    block_size: int
    gateway: IPAddr | None = None
    exclude: frozenset[IPAddr] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"cidr": str(self.cidr), "blockSize": self.block_size,
                "gateway": str(self.gateway) if self.gateway else None,
                "exclude": sorted(str(x) for x in self.exclude)}

    @staticmethod
    def from_json(name: str, d: dict[str, Any]) -> Pool:
        cidr = ipaddress.ip_network(d["cidr"])
        gw = ipaddress.ip_address(d["gateway"]) if d.get("gateway") else None
        return Pool(name, cidr, int(d.get("blockSize") or DEFAULT_BLOCK[cidr.version]), gw,
                    frozenset(ipaddress.ip_address(x) for x in d.get("exclude") or []))

    def blocks(self) -> Iterator[IPNet]:
        if self.block_size <= self.cidr.prefixlen:
            yield self.cidr
        else:
            yield from self.cidr.subnets(new_prefix=self.block_size)

    def block_of(self, ip: IPAddr) -> IPNet:
        size = max(self.block_size, self.cidr.prefixlen)
        return ipaddress.ip_network(f"{ip}/{size}", strict=False)

    def usable(self, ip: IPAddr) -> bool:
        """Not the pool's network or broadcast address, not the gateway, not excluded."""
        if ip in self.exclude or ip == self.gateway:
            return False
        if self.cidr.version == 4 and self.cidr.prefixlen < 31:
            return ip not in (self.cidr.network_address, self.cidr.broadcast_address)
        return ip != self.cidr.network_address


@dataclass
class Block:
    cidr: IPNet
    node: str
    allocations: dict[str, str] = field(default_factory=dict)   # ip -> handle id
    cooldown: dict[str, float] = field(default_factory=dict)    # ip -> usable again at (unix time)
    whole: bool = False     # a node subnet (host-local mode): the node allocates inside it itself

    def copy(self) -> Block:
        return Block(self.cidr, self.node, dict(self.allocations), dict(self.cooldown), self.whole)

    def to_bytes(self) -> bytes:
        d: dict[str, Any] = {"cidr": str(self.cidr), "node": self.node, "allocations": self.allocations,
                             "cooldown": self.cooldown}
        if self.whole:
            d["whole"] = True
        return json.dumps(d, sort_keys=True).encode()

    @staticmethod
    def from_bytes(raw: bytes) -> Block:
        d = json.loads(raw)
        return Block(ipaddress.ip_network(d["cidr"]), d.get("node", ""), dict(d.get("allocations") or {}),
                     {k: float(v) for k, v in (d.get("cooldown") or {}).items()}, bool(d.get("whole")))

    def free_address(self, pool: Pool, now: float) -> IPAddr | None:
        if self.whole:      # a node's own subnet is never lent out address by address
            return None
        for ip in self.cidr:  # the pool decides what is usable (its own network/broadcast, gateway)
            s = str(ip)
            if s not in self.allocations and self.cooldown.get(s, 0.0) <= now and pool.usable(ip):
                return ip
        return None

    def prune_cooldown(self, now: float) -> None:
        """Forget rested addresses (on the copy about to be written)."""
        self.cooldown = {ip: t for ip, t in self.cooldown.items() if t > now}


def handle_id(network: str, container_id: str, ifname: str) -> str:
    return f"{network}/{container_id}/{ifname}"


def block_key_part(cidr: IPNet) -> str:
    return f"{cidr.network_address}-{cidr.prefixlen}"
