"""Give freed heap back to the kernel after a big burst of allocations, and keep the cyclic
collector off the long-lived heap (settle).

A whole policy table for a large cluster is a transaction of hundreds of thousands of set
elements: Python builds the script and libnftables parses it, and glibc keeps the freed pages in
its arenas — the agent's RSS stays at the burst's peak (measured: 324 → 156 MiB at 30 000 pods
after malloc_trim).  Called after such bursts only; a no-op where the C library has no
malloc_trim (musl)."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

BIG_SCRIPT = 1 << 20        # bytes of nft script that make a burst worth trimming after
SETTLE_PODS = 5000          # pods in the cluster from which settle() is worth its one full collection


@functools.cache
def _trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn: Callable[[int], int] = libc.malloc_trim
        return fn
    except (OSError, AttributeError):
        return None


def give_back() -> bool:
    """Return free heap pages to the kernel; whether the C library could."""
    fn = _trim()
    if fn is None:
        return False
    fn(0)
    return True


def settle() -> None:
    """After the whole policy table: what is alive now — every Pod of the cluster, the table —
    lives until the next whole table, so it goes out of the cyclic collector's way (gc.freeze).
    At 150 000 pods a full collection walks millions of objects (~0.35 s: a pause in the middle
    of programming pod events, every time one falls due).  The previous frozen set is collected
    once here first, so nothing it left behind is kept.  Objects are still freed by reference
    counting; podnet's policy objects hold no cycles."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
