"""The one table that turns an exception into a CNI error code.

Subsystems raise their own typed errors (NetError, IpamError, PluginError, OSError…); the code
the runtime sees is chosen here, for the in-process path and the agent alike.  Only the CNI
contract layer (cni/) raises CNIError with a code of its own: request validation, version
gates, config errors naming their field.
"""
from __future__ import annotations

from ..cni.errors import INTERNAL, INVALID_ENV, NOT_AVAILABLE, TRY_AGAIN_LATER, CNIError
from ..ipam.errors import AddressUnavailable, Conflict, IpamError, RangeExhausted, StoreUnavailable
from ..net.errors import AddressConflict, NetError, NetnsGone, NotANetns
from ..plugins.errors import BadDelegateResult, CheckFailed, NotAvailable, PluginError, PortInUse, TryAgain

# (exception class, code): the first match wins, so specific classes come first
TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (NetnsGone, INVALID_ENV),           # CNI_NETNS names no namespace
    (NotANetns, INVALID_ENV),
    (RangeExhausted, TRY_AGAIN_LATER),  # addresses come back as pods are deleted
    (StoreUnavailable, TRY_AGAIN_LATER),
    (Conflict, TRY_AGAIN_LATER),        # cluster IPAM: too many concurrent writers this time
    (TryAgain, TRY_AGAIN_LATER),
    (NotAvailable, NOT_AVAILABLE),      # STATUS: this node cannot serve ADD now
    (CheckFailed, INTERNAL),            # as the reference plugins: a failed CHECK is 999
    (PortInUse, INTERNAL),
    (BadDelegateResult, INTERNAL),
    (PluginError, INTERNAL),
    (AddressUnavailable, INTERNAL),
    (AddressConflict, INTERNAL),
    (IpamError, INTERNAL),
    (NetError, INTERNAL),
)

PREFIX: dict[type[BaseException], str] = {NetnsGone: "CNI_NETNS: no such network namespace: ", NotANetns: "CNI_NETNS: "}


def to_cni_error(exc: BaseException) -> CNIError:
    if isinstance(exc, CNIError):
        return exc
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return CNIError(code, PREFIX.get(cls, "") + str(exc))
    return CNIError(INTERNAL, f"{type(exc).__name__}: {exc}".splitlines()[0])
