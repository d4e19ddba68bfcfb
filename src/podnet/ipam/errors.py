"""IPAM errors with structured fields; the edge table maps them to CNI codes."""
from __future__ import annotations


class IpamError(Exception):
    """Root of address-management failures."""


class RangeExhausted(IpamError):
    def __init__(self, range_desc: str) -> None:
        super().__init__(f"no IP addresses available in range set: {range_desc}")
        self.range_desc = range_desc


class AddressUnavailable(IpamError):
    """A requested address is taken or outside every range."""


class StoreUnavailable(IpamError):
    """The store cannot be reached or written (transient: code 11)."""


class Conflict(IpamError):
    """Too many concurrent writers beat us to the same block; try again later."""
