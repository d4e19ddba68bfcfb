"""The key-value contract the cluster IPAM and the node registry are written against: etcd's
model (revisions, multi-key compare-then-write transactions, leases, prefix watches), declared
once so that `EtcdKV` (etcdkv.py, the real store) and `MemKV` (memkv.py, unit tests and dry
runs) are interchangeable, and nothing above this layer ever sees an etcd client type.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


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


OnEvent = Callable[[str, "bytes | None"], None]


class KV(Protocol):
    """Reads and atomic writes: all the allocator needs."""

    def get(self, key: str) -> Entry | None: ...
    def get_prefix(self, prefix: str) -> list[Entry]: ...
    def txn(self, t: Txn) -> int: ...  # the new revision, 0 when a compare failed
    def delete_prefix(self, prefix: str) -> None: ...


class LeasedKV(KV, Protocol):
    """What the node registry and the routing agents add: leases (a node's registration lives
    as long as its agent keeps the lease alive) and prefix watches.

    watch_prefix calls on_event(key, value or None for a delete) for every change; after the
    watch is (re)established it calls on_event("", None): events may have been missed, the
    caller resyncs.  It returns a function that stops the watch."""

    def grant_lease(self, ttl: int) -> int: ...
    def keep_alive(self, lease: int) -> None: ...
    def watch_prefix(self, prefix: str, on_event: OnEvent) -> Callable[[], None]: ...
