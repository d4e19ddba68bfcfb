"""Whether this node can network pods yet, and whether something needs an operator's look.

not ready  An agent without cross-node routing is ready at once; with it, only after it joined
           the cluster, holds its pod CIDRs and made one routing pass.  Until then CNI STATUS
           answers code 50 and GET /readyz answers 503, so kubelet keeps the node NotReady (and the
           DaemonSet's readiness probe fails) instead of starting pods.
degraded   Ready, but the datastore cannot be followed (the API refuses a watch, etcd is away):
           pods still get addresses and the routes already programmed stay, but changes elsewhere
           are not seen.  /readyz stays 200 and says why; `podnet doctor` warns.
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_reason = ""          # "" = ready
_degraded = ""        # "" = nothing to report


def not_ready(reason: str) -> None:
    global _reason
    with _lock:
        _reason = reason or "not ready"


def set_ready() -> None:
    global _reason
    with _lock:
        _reason = ""


def reason() -> str:
    """Why the node is not ready; "" when it is."""
    with _lock:
        return _reason


def set_degraded(why: str) -> None:
    """What keeps the datastore from being followed ("" when nothing)."""
    global _degraded
    with _lock:
        _degraded = why


def degraded() -> str:
    with _lock:
        return _degraded
