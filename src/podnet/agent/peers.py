"""Where an agent learns the cluster's nodes and which pod CIDRs each one owns — the
datastore behind cross-node routing.  One interface, chosen by name in agent/node.py:

  EtcdPeers  the cluster IPAM's etcd, through its node registry (ipam/registry.py): nodes
             registered under a lease, blocks affine to nodes; watched with an etcd watch
  KubePeers  (agent/kubepeers.py) Kubernetes Node objects: spec.podCIDRs, InternalIP, and what
             each agent publishes as annotations (VTEP MAC); watched with list+watch
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from ..ipam.registry import NodeRegistry

log = logging.getLogger(__name__)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class Peers(Protocol):
    node: str

    def join(self, info: dict[str, str]) -> None: ...          # announce this node (again, if it was lost)
    def heartbeat(self) -> None: ...                           # keep the announcement alive
    def housekeeping(self) -> None: ...                        # periodic: take back what dead nodes held
    def nodes(self) -> dict[str, dict[str, str]]: ...          # live nodes → {"addr", "vtep_mac", …}
    def owners(self) -> dict[IPNet, str]: ...                  # pod CIDR → node
    def watch(self, wake: Callable[[], None]) -> Callable[[], None]: ...   # returns stop()
    def requests(self) -> list[str]: ...                       # what an operator asked of this node (rotate-key)
    def request_done(self, name: str) -> None: ...             # … handled: forget it


class EtcdPeers:
    """Nodes and blocks in the cluster IPAM's etcd.

    What the watch reports (node records, known nodes, blocks) is kept here, so a routing pass
    at rest reads nothing from etcd: twenty agents re-reading every node and block every pass
    were ~70 etcd requests/s on an idle 20-node cluster.  The view is relisted from etcd whenever
    it may be incomplete — at the start, after the watch is (re)established (events may have been
    missed), when a block is deleted (its key names no CIDR to drop), and when an event arrived
    while a relist was reading."""

    def __init__(self, registry: NodeRegistry, ttl: int = 10, reclaim_after: float = 300.0) -> None:
        self.registry = registry
        self.node = registry.node
        self.ttl = ttl
        self.reclaim_after = reclaim_after   # 0: this agent never reclaims dead nodes' blocks
        self.lease = 0
        self._info: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stale = True                   # relist before the next use
        self._generation = 0                 # bumped by every event
        self._nodes: dict[str, dict[str, str]] = {}
        self._owners: dict[IPNet, str] = {}
        self._known: set[str] = set()
        self._own_deleted = False            # the watch saw our record deleted since we joined
        self._requests: set[str] = set()     # requests/<this node>/<name> keys (`podnet node rotate-key`)
        self.relists = 0                     # etcd relists so far (tests, metrics)

    def join(self, info: dict[str, str]) -> None:
        self._info = info
        with self._lock:
            self._own_deleted = False
        self.lease = self.registry.register(self.ttl, info)

    def heartbeat(self) -> None:
        """Renew the lease; register again if our record is gone (lease expired, `podnet node rm`
        while we live) — seen deleted by the watch, or asked of etcd while the view is stale.
        (Not "absent from the view": right after a join our own record's event may not be in yet.)"""
        self.registry.kv.keep_alive(self.lease)
        with self._lock:
            gone = None if self._stale else self._own_deleted
        if gone is None:
            gone = self.registry.kv.get(self.registry.node_key(self.node)) is None
        if gone:
            log.warning("our registration is gone (lease expired, or removed): registering again")
            self.join(self._info)

    def housekeeping(self) -> None:
        """Reclaim dead nodes' blocks — only when the view shows a dead node (known, not live)."""
        if self.reclaim_after <= 0:
            return
        self._fresh()
        with self._lock:
            dead = self._known - set(self._nodes)
        if not dead:
            return
        for node, released in self.registry.reclaim(self.reclaim_after).items():
            log.warning("reclaimed the blocks of dead node %s (%d handles released)", node, len(released))

    def nodes(self) -> dict[str, dict[str, str]]:
        self._fresh()
        with self._lock:
            return dict(self._nodes)

    def owners(self) -> dict[IPNet, str]:
        self._fresh()
        with self._lock:
            return dict(self._owners)

    def _fresh(self) -> None:
        """Relist from etcd if the view may be incomplete."""
        with self._lock:
            if not self._stale:
                return
            generation = self._generation
        nodes = self.registry.node_infos()
        owners = self.registry.block_owners()
        known = self.registry.known_nodes()
        requests = self.registry.requests()
        with self._lock:
            self._nodes, self._owners, self._known = nodes, owners, known
            self._requests = requests
            self._stale = self._generation != generation      # an event raced the relist: again next time
            self.relists += 1

    def _apply(self, key: str, value: bytes | None) -> bool:
        """Fold one watch event into the view; True when it moves a route (wake the loop)."""
        rest = key[len(self.registry.prefix):]
        with self._lock:
            self._generation += 1
            if not key:                                   # the watch (re)started: relist
                self._stale = True
                return True
            if rest.startswith("nodes/"):
                name = rest[len("nodes/"):]
                info = self.registry.parse_node(value) if value is not None else None
                if info is None:
                    self._nodes.pop(name, None)
                    if name == self.node and value is None:
                        self._own_deleted = True
                else:
                    self._nodes[str(info["node"])] = info
                return True
            if rest.startswith(f"requests/{self.node}/"):
                name = rest[len(f"requests/{self.node}/"):]
                if value is None:
                    self._requests.discard(name)
                    return False
                self._requests.add(name)
                return True
            if rest.startswith("known/"):
                name = rest[len("known/"):]
                if value is None:
                    self._known.discard(name)
                else:
                    self._known.add(name)
                return False
            is_block, block = self.registry.block_event(key, value)
            if not is_block:
                return False
            if block is None:                             # deleted or unreadable: which CIDR is unknown
                self._stale = True
                return True
            moved = self._owners.get(block.cidr) != block.node
            self._owners[block.cidr] = block.node
            return moved

    def requests(self) -> list[str]:
        self._fresh()
        with self._lock:
            return sorted(self._requests)

    def request_done(self, name: str) -> None:
        self.registry.request_done(name)
        with self._lock:
            self._requests.discard(name)

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        def on_event(key: str, value: bytes | None) -> None:
            """Wake for what changes routes: a resync (""), a node registered or gone, a block
            claimed, moved or deleted.  An allocation inside a block already routed (every pod
            ADD on every node) changes no route and wakes nobody."""
            if self._apply(key, value):
                wake()
        return self.registry.kv.watch_prefix(self.registry.prefix, on_event)
