"""The Store contract the allocator runs over.

A store holds reservations `ip -> Handle` per network plus a round-robin cursor per
range set.  All work happens inside `session()`, which makes the sequence of calls
atomic with respect to other sessions (the file store holds host-local's flock, so
the Go host-local and podnet exclude each other too).
"""
from __future__ import annotations

import ipaddress
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Protocol

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, order=True)
class Handle:
    """Who holds an address: (containerID, ifname).  ifname '' = a legacy id-only file."""
    container_id: str
    ifname: str

    def matches(self, other: Handle) -> bool:
        """host-local semantics: an id-only reservation matches any ifname."""
        return self.container_id == other.container_id and (
            not self.ifname or not other.ifname or self.ifname == other.ifname)


class Session(Protocol):
    def get(self, handle: Handle) -> list[IPAddr]: ...
    def reserve(self, ip: IPAddr, handle: Handle, range_id: int) -> bool: ...
    def release(self, handle: Handle) -> list[IPAddr]: ...
    def release_ip(self, ip: IPAddr) -> None: ...
    def holders(self) -> dict[IPAddr, Handle]: ...
    def last_reserved(self, range_id: int) -> IPAddr | None: ...


class Store(Protocol):
    def session(self) -> ContextManager[Session]: ...
