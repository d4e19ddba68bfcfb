"""Whether this node can network pods yet.  An agent without cross-node routing is ready at
once; with it, only after it joined the cluster, holds its pod CIDRs and made one routing
pass.  Until then CNI STATUS answers code 50 and GET /readyz answers 503, so kubelet keeps
the node NotReady (and the DaemonSet's readiness probe fails) instead of starting pods."""
from __future__ import annotations

import threading

_lock = threading.Lock()
_reason = ""          # "" = ready


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
