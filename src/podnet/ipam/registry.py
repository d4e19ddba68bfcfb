"""The cluster's nodes in the IPAM's store: who is alive (a registration bound to a lease its
agent keeps alive), what each published about itself (underlay address, backend data such as a
VTEP MAC), which blocks each owns, and taking back a dead node's blocks.

Keys under the IPAM's prefix:
  nodes/<node>   {"node", "since", "addr", …}   bound to the node's lease: gone when it expires
  known/<node>   {}                             the node once registered (only such nodes die)
  dead/<node>    {"since"}                      when an agent first saw it dead (the grace clock)
  requests/<node>/<what>  {"at"}                an operator's request to that node's agent
                                                (`podnet node rotate-key`): deleted once done
Agents (agent/peers.py) and `podnet node` read nodes only through this module.
"""
from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

from .blocks import Block, IPNet
from .cluster import ClusterIpam
from .errors import Conflict
from .kv import LeasedKV, Txn

MAX_ATTEMPTS = 40


class NodeRegistry:
    def __init__(self, ipam: ClusterIpam) -> None:
        self.ipam = ipam
        self.node = ipam.node
        self.prefix = ipam.prefix

    @property
    def kv(self) -> LeasedKV:
        kv: Any = self.ipam.kv
        return kv  # type: ignore[no-any-return]

    def node_key(self, node: str) -> str:
        return f"{self.prefix}nodes/{node}"

    def register(self, ttl: int, info: dict[str, Any] | None = None) -> int:
        """Announce this node under a lease (keep it alive with keep_alive); returns the lease.
        `known/<node>` (no lease) remembers that the node once registered: only such nodes are
        ever declared dead — a node that never ran an agent is not."""
        lease = self.kv.grant_lease(ttl)
        record = json.dumps({"node": self.node, "since": time.time(), **(info or {})}).encode()
        known = f"{self.prefix}known/{self.node}"
        dead = f"{self.prefix}dead/{self.node}"
        self.kv.txn(Txn((), ((self.node_key(self.node), record),), (dead,), lease=lease))
        got = self.kv.get(known)
        self.kv.txn(Txn(((known, got.mod_revision if got else 0),), ((known, b"{}"),)))
        return lease

    def keep_alive(self, lease: int) -> bool:
        """Renew the lease; False when our registration is gone (expired, or removed by hand)."""
        self.kv.keep_alive(lease)
        return self.kv.get(self.node_key(self.node)) is not None

    def remove_node(self, node: str) -> bool:
        """An operator's `podnet node rm`: the node's registration goes now instead of at its
        lease's expiry, so every agent drops its routes at once (its blocks are reclaimed
        later, like any dead node's).  False when it was not registered."""
        key = self.node_key(node)
        got = self.kv.get(key)
        return got is not None and bool(self.kv.txn(Txn(((key, got.mod_revision),), (), (key,))))

    def request(self, node: str, what: str) -> None:
        """Ask node's agent to do `what` (its next pass does, then deletes the request)."""
        self.kv.txn(Txn((), ((f"{self.prefix}requests/{node}/{what}", json.dumps({"at": time.time()}).encode()),)))

    def requests(self) -> set[str]:
        """The requests pending for this registry's node."""
        prefix = f"{self.prefix}requests/{self.node}/"
        return {e.key[len(prefix):] for e in self.kv.get_prefix(prefix)}

    def request_done(self, what: str) -> None:
        self.kv.txn(Txn((), (), (f"{self.prefix}requests/{self.node}/{what}",)))

    def live_nodes(self) -> set[str]:
        return {e.key.rsplit("/", 1)[1] for e in self.kv.get_prefix(f"{self.prefix}nodes/")}

    def dead_nodes(self) -> set[str]:
        return self.known_nodes() - self.live_nodes()

    def known_nodes(self) -> set[str]:
        """Every node that ever registered and was not yet reclaimed."""
        return {e.key.rsplit("/", 1)[1] for e in self.kv.get_prefix(f"{self.prefix}known/")}

    @staticmethod
    def parse_node(value: bytes) -> dict[str, str] | None:
        """A node record, or None when it is not one (no name, no valid address)."""
        try:
            info = json.loads(value)
            ipaddress.ip_address(info["addr"])
            str(info["node"])
        except (ValueError, KeyError, TypeError):
            return None
        return info if isinstance(info, dict) else None

    def node_infos(self) -> dict[str, dict[str, str]]:
        """Live nodes (their lease holds) and what each registered (addr, vtep_mac…)."""
        out = {}
        for e in self.kv.get_prefix(f"{self.prefix}nodes/"):
            info = self.parse_node(e.value)
            if info is not None:
                out[str(info["node"])] = info
        return out

    def block_owners(self) -> dict[IPNet, str]:
        """Every block of every pool → the node it is affine to ("" once reclaimed)."""
        return {b.cidr: b.node for pool in self.ipam.pools() for b, _ in self.ipam.blocks(pool.name)}

    def is_node_event(self, key: str) -> bool:
        return key[len(self.prefix):].startswith("nodes/")

    def block_event(self, key: str, value: bytes | None) -> tuple[bool, Block | None]:
        """(is this key a block, the block or None when deleted/unreadable)."""
        if not key[len(self.prefix):].startswith("blocks/"):
            return False, None
        if value is None:
            return True, None
        try:
            return True, Block.from_bytes(value)
        except (ValueError, KeyError):
            return True, None

    def stale_blocks(self) -> list[str]:
        """Blocks still affine to a dead node (a problem for `podnet ipam check`)."""
        dead = self.dead_nodes()
        return [f"block {b.cidr} is claimed by dead node {b.node} (run `podnet ipam reclaim`)"
                for pool in self.ipam.pools() for b, _ in self.ipam.blocks(pool.name) if b.node in dead]

    def reclaim(self, grace: float) -> dict[str, list[str]]:
        """Take back the blocks of nodes whose lease expired at least `grace` seconds ago.

        First sight of a dead node only records when it was seen dead; a later pass (the
        second look) that still finds it dead after the grace period releases its handles,
        keeps allocations that live nodes' handles hold in its blocks (borrowers), and
        leaves the blocks unaffined for any node to claim.  Returns {node: released handles}.
        """
        out: dict[str, list[str]] = {}
        now = time.time()
        for node in sorted(self.dead_nodes()):
            mark = f"{self.prefix}dead/{node}"
            seen = self.kv.get(mark)
            if seen is None:
                self.kv.txn(Txn(((mark, 0), (self.node_key(node), 0)), ((mark, json.dumps({"since": now}).encode()),)))
                continue
            if now - float(json.loads(seen.value)["since"]) < grace:
                continue
            if node in self.live_nodes():   # the second look: it came back meanwhile
                continue
            released = [hid for hid, rec in self.ipam.handles().items() if rec.get("node") == node]
            for hid in released:
                self.ipam.release(hid)
            for pool in self.ipam.pools():
                for block, _ in self.ipam.blocks(pool.name):
                    if block.node == node:
                        self._unaffine(pool.name, block.cidr, node)
                self.ipam.forget_view(pool.name)
            known = f"{self.prefix}known/{node}"
            self.kv.txn(Txn(((self.node_key(node), 0),), (), (mark, known)))
            out[node] = released
        return out

    def _unaffine(self, pool: str, cidr: IPNet, node: str) -> None:
        key = self.ipam.block_key(pool, cidr)
        for _ in range(MAX_ATTEMPTS):
            got = self.kv.get(key)
            if got is None:
                return
            block = Block.from_bytes(got.value)
            if block.node != node:
                return
            block.node = ""
            if self.kv.txn(Txn(((key, got.mod_revision),), ((key, block.to_bytes()),))):
                return
        raise Conflict(f"could not unaffine block {cidr} of {node}")
