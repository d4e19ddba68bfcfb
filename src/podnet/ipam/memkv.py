"""An in-memory KV with etcd's transaction semantics (mod revisions, compare-then-write),
for unit tests of the cluster IPAM and for dry runs; one process only."""
from __future__ import annotations

import threading
from collections.abc import Callable

from .kv import Entry, Txn


class MemKV:
    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, int]] = {}
        self._rev = 0
        self._lock = threading.Lock()
        self.txns = 0          # write transactions attempted (benchmarks, tests)
        self.writes = 0        # ... and applied
        self._leases: dict[int, set[str]] = {}
        self._watches: list[tuple[str, Callable[[str, bytes | None], None]]] = []

    def get(self, key: str) -> Entry | None:
        with self._lock:
            v = self._data.get(key)
            return None if v is None else Entry(key, v[0], v[1])

    def get_prefix(self, prefix: str) -> list[Entry]:
        with self._lock:
            return [Entry(k, v, r) for k, (v, r) in sorted(self._data.items()) if k.startswith(prefix)]

    def txn(self, t: Txn) -> int:
        with self._lock:
            self.txns += 1
            for key, rev in t.compares:
                have = self._data.get(key)
                if (rev == 0 and have is not None) or (rev != 0 and (have is None or have[1] != rev)):
                    return 0
            self._rev += 1
            self.writes += 1
            for key, value in t.puts:
                self._data[key] = (value, self._rev)
                if t.lease:
                    self._leases.setdefault(t.lease, set()).add(key)
            for key in t.deletes:
                self._data.pop(key, None)
            rev = self._rev
        self._notify([*t.puts, *((k, None) for k in t.deletes)])
        return rev

    def watch_prefix(self, prefix: str, on_event: Callable[[str, bytes | None], None]) -> Callable[[], None]:
        """on_event(key, value or None) after every write under `prefix` (synchronously, in the writer)."""
        w = (prefix, on_event)
        self._watches.append(w)
        return lambda: self._watches.remove(w)

    def _notify(self, changes: list[tuple[str, bytes | None]]) -> None:
        for prefix, fn in list(self._watches):
            for key, value in changes:
                if key.startswith(prefix):
                    fn(key, value)

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for k in [k for k in self._data if k.startswith(prefix)]:
                del self._data[k]

    def grant_lease(self, ttl: int) -> int:
        with self._lock:
            lease = len(self._leases) + 1000
            self._leases[lease] = set()
            return lease

    def keep_alive(self, lease: int) -> None:
        pass

    def expire_lease(self, lease: int) -> None:
        """What etcd does when nobody kept the lease alive: its keys go."""
        with self._lock:
            gone = list(self._leases.pop(lease, set()))
            for key in gone:
                self._data.pop(key, None)
            self._rev += 1
        self._notify([(k, None) for k in gone])
