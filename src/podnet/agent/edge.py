"""The one table that turns an exception into a CNI error code.

Subsystems raise their own errors (NetError, IpamError, OSError…); the code the
runtime sees is chosen here, for the in-process path and the agent alike.
"""
from __future__ import annotations

import subprocess

from ..cni.errors import INTERNAL, INVALID_ENV, TRY_AGAIN_LATER, CNIError
from ..ipam.cluster import Conflict
from ..ipam.errors import AddressUnavailable, IpamError, RangeExhausted, StoreUnavailable
from ..net.errors import AddressConflict, NetError, NetnsGone, NotANetns

# (exception class, code): the first match wins, so specific classes come first
TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (NetnsGone, INVALID_ENV),           # CNI_NETNS names no namespace
    (NotANetns, INVALID_ENV),
    (RangeExhausted, TRY_AGAIN_LATER),  # addresses come back as pods are deleted
    (StoreUnavailable, TRY_AGAIN_LATER),
    (Conflict, TRY_AGAIN_LATER),        # cluster IPAM: too many concurrent writers this time
    (subprocess.TimeoutExpired, TRY_AGAIN_LATER),
    (AddressUnavailable, INTERNAL),
    (AddressConflict, INTERNAL),
    (IpamError, INTERNAL),
    (NetError, INTERNAL),
)

PREFIX = {NetnsGone: "CNI_NETNS: no such network namespace: ", NotANetns: "CNI_NETNS: "}


def to_cni_error(exc: BaseException) -> CNIError:
    if isinstance(exc, CNIError):
        return exc
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return CNIError(code, PREFIX.get(cls, "") + str(exc))
    return CNIError(INTERNAL, f"{type(exc).__name__}: {exc}".splitlines()[0])
