"""Kernel-side errors, free of pyroute2 types so upper layers can catch them."""
from __future__ import annotations


class NetError(Exception):
    """Root of every kernel-side failure."""


class LinkNotFound(NetError):
    pass


class LinkExists(NetError):
    pass


class LinkKindUnsupported(NetError):
    """The kernel has no such link type (EOPNOTSUPP), e.g. ipvlan/vlan/dummy not built."""


class NetnsGone(NetError):
    """The network namespace path does not exist (or is no longer a netns)."""


class NotANetns(NetError):
    """The path exists but is not a network namespace file."""


class AddressConflict(NetError):
    """An interface holds an address that conflicts with what we must put there."""


class NftError(NetError):
    pass
