"""The one table that turns an exception into a CNI error code.

Subsystems raise their own typed errors (NetError, IpamError, PluginError, OSError…); the code
the runtime sees is chosen here, for the in-process path and the agent alike.  Only the CNI
contract layer (cni/) raises CNIError with a code of its own: request validation, version
gates, config errors naming their field.
"""
from __future__ import annotations

import errno

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


# a file-system refusal caused by the request or the node (a path too long, a disk full or read-only,
# no permission): the answer names the path; it is not a bug in podnet
NODE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ELOOP})


def to_cni_error(exc: BaseException) -> tuple[CNIError, bool]:
    """(the CNI error, whether the exception was expected).  Expected: the typed errors of the
    table and the node's file-system refusals — the request's or the node's fault, worth a log
    line.  Anything else is a bug in podnet: its traceback goes to the log (cni/skel.py)."""
    if isinstance(exc, CNIError):
        return exc, True
    for cls, code in TABLE:
        if isinstance(exc, cls):
            return CNIError(code, PREFIX.get(cls, "") + str(exc)), True
    if isinstance(exc, OSError) and exc.errno in NODE_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return CNIError(INTERNAL, f"{exc.strerror or exc}{where}"), True
    return CNIError(INTERNAL, f"{type(exc).__name__}: {exc}".splitlines()[0]), False
