"""Where an agent learns the cluster's nodes and which pod CIDRs each one owns — the
datastore behind cross-node routing.  Two implementations, one interface:

  EtcdPeers  the cluster IPAM's etcd: nodes registered under a lease (`nodes/<name>`), blocks
             affine to nodes; watched with an etcd watch
  KubePeers  (agent/kubepeers.py) Kubernetes Node objects: spec.podCIDRs, InternalIP, and what
             each agent publishes as annotations (VTEP MAC); watched with list+watch
"""
from __future__ import annotations

import ipaddress
import json
import logging
from typing import Callable, Protocol

from ..ipam.cluster import Block, ClusterIpam

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


def node_infos(ipam: ClusterIpam) -> dict[str, dict[str, str]]:
    """Live nodes (their lease holds) and what each registered (addr, vtep_mac…)."""
    out = {}
    for e in ipam.kv.get_prefix(f"{ipam.prefix}nodes/"):
        try:
            info = json.loads(e.value)
            ipaddress.ip_address(info["addr"])
            out[str(info["node"])] = info
        except (ValueError, KeyError, TypeError):
            continue
    return out


def block_owners(ipam: ClusterIpam) -> dict[IPNet, str]:
    return {b.cidr: b.node for pool in ipam.pools() for b, _ in ipam.blocks(pool.name)}


class EtcdPeers:
    """Nodes and blocks in the cluster IPAM's etcd."""

    def __init__(self, ipam: ClusterIpam, ttl: int = 10, reclaim_after: float = 300.0) -> None:
        self.ipam = ipam
        self.node = ipam.node
        self.ttl = ttl
        self.reclaim_after = reclaim_after   # 0: this agent never reclaims dead nodes' blocks
        self.lease = 0
        self._info: dict[str, str] = {}
        self._owners: dict[IPNet, str] = {}  # as of the last owners() call

    def join(self, info: dict[str, str]) -> None:
        self._info = info
        self.lease = self.ipam.register(self.ttl, info)

    def heartbeat(self) -> None:
        self.ipam.kv.keep_alive(self.lease)  # type: ignore[attr-defined]
        if self.ipam.kv.get(self.ipam.node_key(self.node)) is None:
            log.warning("our registration is gone (lease expired, or removed): registering again")
            self.join(self._info)

    def housekeeping(self) -> None:
        if self.reclaim_after > 0:
            for node, released in self.ipam.reclaim(self.reclaim_after).items():
                log.warning("reclaimed the blocks of dead node %s (%d handles released)", node, len(released))

    def nodes(self) -> dict[str, dict[str, str]]:
        return node_infos(self.ipam)

    def owners(self) -> dict[IPNet, str]:
        self._owners = block_owners(self.ipam)
        return self._owners

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        kv_watch = getattr(self.ipam.kv, "watch_prefix", None)
        if kv_watch is None:
            return lambda: None

        def on_event(key: str, value: bytes | None) -> None:
            """Wake for what changes routes: a resync (""), a node registered or gone, a block
            claimed, moved or deleted.  An allocation inside a block already routed (every pod
            ADD on every node) changes no route and wakes nobody."""
            rest = key[len(self.ipam.prefix):]
            if not key or rest.startswith("nodes/"):
                wake()
            elif rest.startswith("blocks/"):
                if value is None:
                    wake()
                    return
                try:
                    block = Block.from_bytes(value)
                except (ValueError, KeyError):
                    wake()
                    return
                if self._owners.get(block.cidr) != block.node:
                    wake()
        stop: Callable[[], None] = kv_watch(self.ipam.prefix, on_event)
        return stop
