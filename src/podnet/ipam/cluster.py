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
import threading
import time
from typing import Any

from .blocks import DEFAULT_BLOCK, Block, IPAddr, IPNet, Pool, block_key_part, handle_id
from .errors import Conflict, IpamError, RangeExhausted
from .kv import KV, Txn

__all__ = ["DEFAULT_BLOCK", "DEFAULT_PREFIX", "Block", "ClusterIpam", "Pool", "handle_id"]

DEFAULT_PREFIX = "/podnet/"
COOLDOWN_SECONDS = 30.0     # a released address rests before reuse (stale ARP/conntrack)
MAX_ATTEMPTS = 40


class ClusterIpam:
    """Allocation for one node over a KV store; safe to share between threads."""

    def __init__(self, kv: KV, node: str, prefix: str = DEFAULT_PREFIX,
                 cooldown: float = COOLDOWN_SECONDS) -> None:
        self.kv = kv
        self.node = node
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.cooldown = cooldown
        self._view: dict[str, dict[IPNet, tuple[Block, int]]] = {}   # pool -> this node's last view of blocks
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._pools: dict[str, Pool] = {}

    # ------------------------------------------------------------ keys
    def pool_key(self, name: str) -> str:
        return f"{self.prefix}pools/{name}"

    def block_key(self, pool: str, cidr: IPNet) -> str:
        return f"{self.prefix}blocks/{pool}/{block_key_part(cidr)}"

    def handle_key(self, hid: str) -> str:
        return f"{self.prefix}handles/{hid}"

    # ------------------------------------------------------------ pools
    def ensure_pool(self, pool: Pool) -> Pool:
        """Create the pool if missing; an existing pool of the same name must agree on its CIDR.
        Once seen, a pool is answered from this allocator's cache (pools do not change CIDR)."""
        cached = self._pools.get(pool.name)
        if cached is not None and cached.cidr == pool.cidr:
            return cached
        key = self.pool_key(pool.name)
        for _ in range(3):
            got = self.kv.get(key)
            if got is not None:
                existing = Pool.from_json(pool.name, json.loads(got.value))
                if existing.cidr != pool.cidr:
                    raise IpamError(f"pool {pool.name!r} exists with CIDR {existing.cidr}, config says {pool.cidr}")
                self._pools[pool.name] = existing
                return existing
            if self.kv.txn(Txn(((key, 0),), ((key, json.dumps(pool.to_json()).encode()),))):
                self._pools[pool.name] = pool
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
    def _pool_lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def _scan(self, pool: Pool) -> dict[IPNet, tuple[Block, int]]:
        view = {b.cidr: (b, rev) for b, rev in self.blocks(pool.name)}
        self._view[pool.name] = view
        return view

    def allocate(self, hid: str, pools: list[Pool]) -> list[IPAddr]:
        """One address from each pool for handle `hid`, in ONE transaction; the same ones again
        when the handle already exists (a repeated ADD).

        The common case is that single transaction and nothing else: the blocks come from
        this node's cached view, the handle's absence is one of the transaction's compares.
        Only a failed compare costs reads (the handle: a repeated ADD; the block: someone
        else wrote it).  Allocations of one node for one pool queue on a local lock, so the
        node's own threads never make each other retry.
        """
        hkey = self.handle_key(hid)
        locks = [self._pool_lock(p.name) for p in sorted(pools, key=lambda p: p.name)]
        for lk in locks:
            lk.acquire()
        try:
            for attempt in range(MAX_ATTEMPTS):
                compares: list[tuple[str, int]] = [(hkey, 0)]
                puts: list[tuple[str, bytes]] = []
                ips: list[IPAddr] = []
                touched: list[tuple[Pool, Block, str]] = []
                now = time.time()
                for pool in pools:
                    try:
                        block, rev = self._pick(pool, now)
                    except RangeExhausted:
                        held = self.kv.get(hkey)    # a repeated ADD needs no free address: its own
                        if held is not None:
                            return [ipaddress.ip_address(x) for x in json.loads(held.value)["ips"]]
                        raise
                    block = block.copy()
                    block.prune_cooldown(now)
                    ip = block.free_address(pool, now)
                    assert ip is not None
                    block.allocations[str(ip)] = hid
                    key = self.block_key(pool.name, block.cidr)
                    compares.append((key, rev))
                    puts.append((key, block.to_bytes()))
                    ips.append(ip)
                    touched.append((pool, block, key))
                record = {"ips": [str(i) for i in ips], "node": self.node, "pools": [p.name for p in pools]}
                puts.append((hkey, json.dumps(record).encode()))
                revision = self.kv.txn(Txn(tuple(compares), tuple(puts)))
                if revision:
                    for pool, block, _ in touched:
                        self._view.setdefault(pool.name, {})[block.cidr] = (block, revision)
                    return ips
                held = self.kv.get(hkey)
                if held is not None:
                    return [ipaddress.ip_address(x) for x in json.loads(held.value)["ips"]]
                for pool, block, key in touched:  # someone else wrote the block: re-read just that one
                    got = self.kv.get(key)
                    view = self._view.setdefault(pool.name, {})
                    if got is None:
                        view.pop(block.cidr, None)
                    else:
                        view[block.cidr] = (Block.from_bytes(got.value), got.mod_revision)
                time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))
            raise Conflict(f"gave up after {MAX_ATTEMPTS} conflicting attempts: try again")
        finally:
            for lk in reversed(locks):
                lk.release()

    def _pick(self, pool: Pool, now: float) -> tuple[Block, int]:
        """A block with a free address: ours, else a new claim (revision 0), else a borrowed one."""
        view = self._view.get(pool.name)
        if view is not None:
            for b, rev in sorted(view.values(), key=lambda x: int(x[0].cidr.network_address)):
                if b.node == self.node and b.free_address(pool, now) is not None:
                    return b, rev
        view = self._scan(pool)  # ours are full (or unknown): look at the whole pool afresh
        mine = [(b, rev) for b, rev in view.values() if b.node == self.node]
        for b, rev in sorted(mine, key=lambda x: int(x[0].cidr.network_address)):
            if b.free_address(pool, now) is not None:
                return b, rev
        for cidr in pool.blocks():
            if cidr not in view:
                b = Block(cidr, self.node)
                if b.free_address(pool, now) is not None:
                    return b, 0
        for b, rev in view.values():  # reclaimed from a dead node: nobody's, so claim it
            if not b.node and b.free_address(pool, now) is not None:
                claimed = b.copy()
                claimed.node = self.node
                return claimed, rev
        others = [(b, rev) for b, rev in view.values() if b.node != self.node]
        random.shuffle(others)  # borrowers spread out instead of all hitting one block
        for b, rev in others:
            if b.free_address(pool, now) is not None:
                return b, rev
        raise RangeExhausted(f"pool {pool.name} ({pool.cidr}) exhausted: no free address in any block")

    # ------------------------------------------------------------ node subnets (host-local mode)
    def claim_subnet(self, pool: Pool) -> IPNet:
        """This node's subnet of `pool` (one block, flannel style): the one it already holds
        (an agent restart keeps it, and with it every pod address), else the first block
        nobody holds, taken in one compare-and-create transaction."""
        pool = self.ensure_pool(pool)
        for _ in range(MAX_ATTEMPTS):
            view = self._scan(pool)
            mine = sorted((b.cidr for b, _ in view.values() if b.node == self.node and b.whole),
                          key=lambda c: int(c.network_address))
            if mine:
                return mine[0]
            free = [(c, 0) for c in pool.blocks() if c not in view]
            free += [(b.cidr, rev) for b, rev in view.values() if not b.node and not b.allocations]
            if not free:
                raise RangeExhausted(f"pool {pool.name} ({pool.cidr}) has no free /{pool.block_size} subnet left")
            cidr, rev = free[0]
            block = Block(cidr, self.node, whole=True)
            if self.kv.txn(Txn(((self.block_key(pool.name, cidr), rev),),
                               ((self.block_key(pool.name, cidr), block.to_bytes()),))):
                return cidr
        raise Conflict(f"could not claim a subnet of pool {pool.name}")

    # ------------------------------------------------------------ release
    def release(self, hid: str) -> list[IPAddr]:
        """Free the handle's addresses and delete it, in ONE transaction; [] for an unknown handle.
        Common case: one read (the handle) and that transaction."""
        hkey = self.handle_key(hid)
        for attempt in range(MAX_ATTEMPTS):
            held = self.kv.get(hkey)
            if held is None:
                return []
            record = json.loads(held.value)
            ips = [ipaddress.ip_address(x) for x in record["ips"]]
            compares: list[tuple[str, int]] = [(hkey, held.mod_revision)]
            puts: list[tuple[str, bytes]] = []
            touched: list[tuple[str, Block]] = []
            for ip, pool_name in zip(ips, record.get("pools") or [], strict=False):  # records before pools: none
                pool = self._pool(pool_name)
                if pool is None:
                    continue
                cidr = pool.block_of(ip)
                key = self.block_key(pool_name, cidr)
                cached = self._view.get(pool_name, {}).get(cidr)
                if cached is None or attempt:
                    got = self.kv.get(key)
                    if got is None:
                        continue
                    cached = (Block.from_bytes(got.value), got.mod_revision)
                block = cached[0].copy()
                if block.allocations.get(str(ip)) == hid:
                    del block.allocations[str(ip)]
                    if self.cooldown > 0:
                        block.cooldown[str(ip)] = time.time() + self.cooldown
                compares.append((key, cached[1]))
                puts.append((key, block.to_bytes()))
                touched.append((pool_name, block))
            revision = self.kv.txn(Txn(tuple(compares), tuple(puts), (hkey,)))
            if revision:
                for pool_name, block in touched:
                    self._view.setdefault(pool_name, {})[block.cidr] = (block, revision)
                return ips
            time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))
        raise Conflict(f"gave up releasing {hid} after {MAX_ATTEMPTS} conflicting attempts")

    def forget_view(self, pool: str) -> None:
        """Drop this allocator's cached view of `pool` (its blocks changed owner)."""
        self._view.pop(pool, None)

    def _pool(self, name: str) -> Pool | None:
        if name not in self._pools:
            for p in self.pools():
                self._pools[p.name] = p
        return self._pools.get(name)

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
            if record.get("node") == self.node and (cid, ifname) not in valid and (cid, "") not in valid:
                self.release(hid)
                gone.append(hid)
        return gone

    def check(self) -> list[str]:
        """Inconsistencies: addresses held twice, handles whose addresses no block records,
        block allocations no handle claims (half-done or leaked).  Blocks of dead nodes are the
        registry's report (registry.NodeRegistry.stale_blocks)."""
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
