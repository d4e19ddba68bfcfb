"""An in-memory Store for unit tests; passes the same contract suite as the real ones."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .store import Handle, IPAddr


class MemorySession:
    def __init__(self, store: MemoryStore) -> None:
        self._s = store

    def get(self, handle: Handle) -> list[IPAddr]:
        return sorted((ip for ip, h in self._s.reservations.items() if h.matches(handle)), key=str)

    def reserve(self, ip: IPAddr, handle: Handle, range_id: int) -> bool:
        if ip in self._s.reservations:
            return False
        self._s.reservations[ip] = handle
        self._s.cursors[range_id] = ip
        return True

    def release(self, handle: Handle) -> list[IPAddr]:
        gone = self.get(handle)
        for ip in gone:
            del self._s.reservations[ip]
        return gone

    def release_ip(self, ip: IPAddr) -> None:
        self._s.reservations.pop(ip, None)

    def holders(self) -> dict[IPAddr, Handle]:
        return dict(self._s.reservations)

    def last_reserved(self, range_id: int) -> IPAddr | None:
        return self._s.cursors.get(range_id)


class MemoryStore:
    def __init__(self) -> None:
        self.reservations: dict[IPAddr, Handle] = {}
        self.cursors: dict[int, IPAddr] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def session(self) -> Iterator[MemorySession]:
        with self._lock:
            yield MemorySession(self)
