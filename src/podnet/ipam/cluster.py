"""Cluster-wide IPAM over a transactional key-value store (etcd): one address space for
every node, no per-node pre-carving, no duplicate, no leak.

Keys under a prefix (default /podnet/), JSON values:
  pools/<pool>                      {"cidr", "blockSize", "gateway", "exclude": [...]}
  blocks/<pool>/<addr>-<len>        {"cidr", "node", "allocations": {ip: handle}, "cooldown": {ip: until}}
  handles/<network>/<cid>/<ifname>  {"ips": [...], "node", "pools": [...]}
Every allocation or release is ONE transaction that compares the mod_revision of each
block it touches and of the handle, and writes them together: there is no lock to
lose and no window between two writes.  A conflict (another allocator won) re-reads
and retries, with jitter, a bounded number of times.

Nodes allocate from blocks affine to them (so they do not contend); claim a free
block when theirs are full; borrow from another node's block only when no block is
free; and say "pool exhausted" when nothing is left.
"""
from __future__ import annotations

import ipaddress
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from .errors import IpamError, RangeExhausted

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PREFIX = "/podnet/"
DEFAULT_BLOCK = {4: 26, 6: 122}
COOLDOWN_SECONDS = 30.0     # a released address rests before reuse (stale ARP/conntrack)
MAX_ATTEMPTS = 40


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class Txn:
    """Compare every (key, mod_revision) (0: the key must not exist); then put and delete."""
    compares: tuple[tuple[str, int], ...]
    puts: tuple[tuple[str, bytes], ...] = ()
    deletes: tuple[str, ...] = ()
    lease: int = 0   # attach the puts to this lease


class KV(Protocol):
    def get(self, key: str) -> Entry | None: ...
    def get_prefix(self, prefix: str) -> list[Entry]: ...
    def txn(self, t: Txn) -> bool: ...


class Conflict(IpamError):
    """Too many concurrent writers beat us to the same block; try again later."""


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
    def from_json(name: str, d: dict[str, Any]) -> "Pool":
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

    def to_bytes(self) -> bytes:
        return json.dumps({"cidr": str(self.cidr), "node": self.node, "allocations": self.allocations,
                           "cooldown": self.cooldown}, sort_keys=True).encode()

    @staticmethod
    def from_bytes(raw: bytes) -> "Block":
        d = json.loads(raw)
        return Block(ipaddress.ip_network(d["cidr"]), d.get("node", ""), dict(d.get("allocations") or {}),
                     {k: float(v) for k, v in (d.get("cooldown") or {}).items()})

    def free_address(self, pool: Pool, now: float) -> IPAddr | None:
        self.cooldown = {ip: t for ip, t in self.cooldown.items() if t > now}
        for ip in self.cidr:  # the pool decides what is usable (its own network/broadcast, gateway)
            s = str(ip)
            if s not in self.allocations and s not in self.cooldown and pool.usable(ip):
                return ip
        return None


def handle_id(network: str, container_id: str, ifname: str) -> str:
    return f"{network}/{container_id}/{ifname}"


def _block_key(cidr: IPNet) -> str:
    return f"{cidr.network_address}-{cidr.prefixlen}"


class ClusterIpam:
    """Allocation for one node over a KV store; safe to share between threads."""

    def __init__(self, kv: KV, node: str, prefix: str = DEFAULT_PREFIX,
                 cooldown: float = COOLDOWN_SECONDS) -> None:
        self.kv = kv
        self.node = node
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.cooldown = cooldown

    # ------------------------------------------------------------ keys
    def pool_key(self, name: str) -> str:
        return f"{self.prefix}pools/{name}"

    def block_key(self, pool: str, cidr: IPNet) -> str:
        return f"{self.prefix}blocks/{pool}/{_block_key(cidr)}"

    def handle_key(self, hid: str) -> str:
        return f"{self.prefix}handles/{hid}"

    # ------------------------------------------------------------ pools
    def ensure_pool(self, pool: Pool) -> Pool:
        """Create the pool if missing; an existing pool of the same name must agree on its CIDR."""
        key = self.pool_key(pool.name)
        for _ in range(3):
            got = self.kv.get(key)
            if got is not None:
                existing = Pool.from_json(pool.name, json.loads(got.value))
                if existing.cidr != pool.cidr:
                    raise IpamError(f"pool {pool.name!r} exists with CIDR {existing.cidr}, config says {pool.cidr}")
                return existing
            if self.kv.txn(Txn(((key, 0),), ((key, json.dumps(pool.to_json()).encode()),))):
                return pool
        raise Conflict(f"could not create pool {pool.name!r}")

    def pools(self) -> list[Pool]:
        out = []
        for e in self.kv.get_prefix(f"{self.prefix}pools/"):
            out.append(Pool.from_json(e.key.rsplit("/", 1)[1], json.loads(e.value)))
        return out

    def blocks(self, pool: str) -> list[tuple[Block, int]]:
        return [(Block.from_bytes(e.value), e.mod_revision) for e in self.kv.get_prefix(f"{self.prefix}blocks/{pool}/")]

    # ------------------------------------------------------------ allocate
    def allocate(self, hid: str, pools: list[Pool]) -> list[IPAddr]:
        """One address from each pool for handle `hid`, in ONE transaction; the same ones again
        when the handle already exists (a repeated ADD)."""
        hkey = self.handle_key(hid)
        for attempt in range(MAX_ATTEMPTS):
            held = self.kv.get(hkey)
            if held is not None:
                return [ipaddress.ip_address(x) for x in json.loads(held.value)["ips"]]
            compares: list[tuple[str, int]] = [(hkey, 0)]
            puts: list[tuple[str, bytes]] = []
            ips: list[IPAddr] = []
            now = time.time()
            for pool in pools:
                block, rev = self._pick(pool, now)
                ip = block.free_address(pool, now)
                assert ip is not None
                block.allocations[str(ip)] = hid
                key = self.block_key(pool.name, block.cidr)
                compares.append((key, rev))
                puts.append((key, block.to_bytes()))
                ips.append(ip)
            record = {"ips": [str(i) for i in ips], "node": self.node, "pools": [p.name for p in pools]}
            puts.append((hkey, json.dumps(record).encode()))
            if self.kv.txn(Txn(tuple(compares), tuple(puts))):
                return ips
            time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
        raise Conflict(f"gave up after {MAX_ATTEMPTS} conflicting attempts: try again")

    def _pick(self, pool: Pool, now: float) -> tuple[Block, int]:
        """A block with a free address: ours, else a new claim (revision 0), else a borrowed one."""
        existing = self.blocks(pool.name)
        by_cidr = {b.cidr: (b, rev) for b, rev in existing}
        mine = [(b, rev) for b, rev in existing if b.node == self.node]
        for b, rev in sorted(mine, key=lambda x: int(x[0].cidr.network_address)):
            if b.free_address(pool, now) is not None:
                return b, rev
        for cidr in pool.blocks():
            if cidr not in by_cidr:
                b = Block(cidr, self.node)
                if b.free_address(pool, now) is not None:
                    return b, 0
        others = [(b, rev) for b, rev in existing if b.node != self.node]
        random.shuffle(others)  # borrowers spread out instead of all hitting one block
        for b, rev in others:
            if b.free_address(pool, now) is not None:
                return b, rev
        raise RangeExhausted(f"pool {pool.name} ({pool.cidr}) exhausted: no free address in any block")

    # ------------------------------------------------------------ release
    def release(self, hid: str) -> list[IPAddr]:
        """Free the handle's addresses and delete it, in ONE transaction; [] for an unknown handle."""
        hkey = self.handle_key(hid)
        for attempt in range(MAX_ATTEMPTS):
            held = self.kv.get(hkey)
            if held is None:
                return []
            record = json.loads(held.value)
            ips = [ipaddress.ip_address(x) for x in record["ips"]]
            compares: list[tuple[str, int]] = [(hkey, held.mod_revision)]
            puts: list[tuple[str, bytes]] = []
            pools = {p.name: p for p in self.pools()}
            for ip, pool_name in zip(ips, record.get("pools") or []):
                pool = pools.get(pool_name)
                if pool is None:
                    continue
                key = self.block_key(pool_name, pool.block_of(ip))
                got = self.kv.get(key)
                if got is None:
                    continue
                block = Block.from_bytes(got.value)
                if block.allocations.get(str(ip)) == hid:
                    del block.allocations[str(ip)]
                    if self.cooldown > 0:
                        block.cooldown[str(ip)] = time.time() + self.cooldown
                compares.append((key, got.mod_revision))
                puts.append((key, block.to_bytes()))
            if self.kv.txn(Txn(tuple(compares), tuple(puts), (hkey,))):
                return ips
            time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
        raise Conflict(f"gave up releasing {hid} after {MAX_ATTEMPTS} conflicting attempts")

    def get(self, hid: str) -> list[IPAddr]:
        held = self.kv.get(self.handle_key(hid))
        return [] if held is None else [ipaddress.ip_address(x) for x in json.loads(held.value)["ips"]]

    def handles(self, network: str = "") -> dict[str, dict[str, Any]]:
        pre = f"{self.prefix}handles/{network + '/' if network else ''}"
        return {e.key[len(self.prefix) + len("handles/"):]: json.loads(e.value) for e in self.kv.get_prefix(pre)}

    def gc(self, network: str, valid: set[tuple[str, str]]) -> list[str]:
        """Release this node's handles of `network` whose (containerID, ifname) is not valid."""
        gone = []
        for hid, record in self.handles(network).items():
            _, cid, ifname = hid.split("/", 2)
            if record.get("node") == self.node and (cid, ifname) not in valid:
                self.release(hid)
                gone.append(hid)
        return gone

    def check(self) -> list[str]:
        """Inconsistencies: addresses held twice, handles whose addresses no block records,
        block allocations no handle claims (half-done or leaked)."""
        problems = []
        owners: dict[str, str] = {}
        for pool in self.pools():
            for block, _ in self.blocks(pool.name):
                for ip, hid in block.allocations.items():
                    if ip in owners:
                        problems.append(f"{ip} allocated twice: {owners[ip]} and {hid}")
                    owners[ip] = hid
        handles = self.handles()
        for hid, record in handles.items():
            for ip in record["ips"]:
                if owners.get(ip) != hid:
                    problems.append(f"handle {hid} holds {ip} but the block records {owners.get(ip) or 'nothing'}")
        for ip, hid in owners.items():
            if hid not in handles:
                problems.append(f"{ip} is allocated to {hid}, which has no handle (leak)")
        return problems
