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


class EtcdPeers:
    """Nodes and blocks in the cluster IPAM's etcd."""

    def __init__(self, registry: NodeRegistry, ttl: int = 10, reclaim_after: float = 300.0) -> None:
        self.registry = registry
        self.node = registry.node
        self.ttl = ttl
        self.reclaim_after = reclaim_after   # 0: this agent never reclaims dead nodes' blocks
        self.lease = 0
        self._info: dict[str, str] = {}
        self._owners: dict[IPNet, str] = {}  # as of the last owners() call

    def join(self, info: dict[str, str]) -> None:
        self._info = info
        self.lease = self.registry.register(self.ttl, info)

    def heartbeat(self) -> None:
        if not self.registry.keep_alive(self.lease):
            log.warning("our registration is gone (lease expired, or removed): registering again")
            self.join(self._info)

    def housekeeping(self) -> None:
        if self.reclaim_after > 0:
            for node, released in self.registry.reclaim(self.reclaim_after).items():
                log.warning("reclaimed the blocks of dead node %s (%d handles released)", node, len(released))

    def nodes(self) -> dict[str, dict[str, str]]:
        return self.registry.node_infos()

    def owners(self) -> dict[IPNet, str]:
        self._owners = self.registry.block_owners()
        return self._owners

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        def on_event(key: str, value: bytes | None) -> None:
            """Wake for what changes routes: a resync (""), a node registered or gone, a block
            claimed, moved or deleted.  An allocation inside a block already routed (every pod
            ADD on every node) changes no route and wakes nobody."""
            if not key or self.registry.is_node_event(key):
                wake()
                return
            is_block, block = self.registry.block_event(key, value)
            if is_block and (block is None or self._owners.get(block.cidr) != block.node):
                wake()
        return self.registry.kv.watch_prefix(self.registry.prefix, on_event)
