"""What the CLI says when a command cannot do its work: one line naming what is missing or
unreachable and where — the datastore, the API server, a file, the agent's socket — never a
traceback.  An exception nobody expected is still one line, marked as a bug, with the way to
see its traceback (PODNET_DEBUG=1)."""
from __future__ import annotations

import sys


def explain(e: BaseException) -> str:
    from ..ipam.errors import IpamError, StoreUnavailable
    from ..ipam.neutron_api import NeutronError, NeutronUnavailable
    if isinstance(e, NeutronUnavailable | NeutronError):
        return str(e)
    if isinstance(e, StoreUnavailable):
        return f"{e} — is etcd running there? (give it with --etcd, or --lab NAME for a lab's)"
    lightkube = sys.modules.get("lightkube.core.exceptions")
    if lightkube is not None and isinstance(e, lightkube.ConfigError):
        return f"kubeconfig: {e}"
    if lightkube is not None and isinstance(e, lightkube.ApiError):
        return f"the API server refused: {e.status.code} {e.status.message}"
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(e, httpx.HTTPError):
        where = getattr(getattr(e, "request", None), "url", "")
        return f"the API server is unreachable{f' at {where}' if where else ''}: {e}"
    if isinstance(e, FileNotFoundError):
        return f"{e.strerror or 'no such file'}: {e.filename}" if e.filename else f"not found: {e.strerror or e}"
    if isinstance(e, PermissionError):
        return f"permission denied: {e.filename or e}" + (" (run as root)" if "root" not in str(e) else "")
    if isinstance(e, ConnectionError):
        return f"cannot connect: {e.strerror or e}"
    if isinstance(e, OSError):
        return f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}"
    if isinstance(e, IpamError) and str(e):
        return str(e).splitlines()[0]
    if type(e) in (LookupError, ValueError) and str(e):        # raised on purpose, with its own message
        return str(e).splitlines()[0]
    return (f"unexpected error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
            "(a bug in podnet: PODNET_DEBUG=1 shows its traceback)")
