"""memtrim: after a burst, the freed heap goes back to the kernel (this machine's glibc has
malloc_trim), so the agent's RSS does not stay at the burst's peak.  The burst is what libnftables
does on an agent thread: many C-heap blocks in a thread's arena, a few of them still alive
afterwards — glibc keeps the free pages between them until trimmed."""
from __future__ import annotations

import threading

from podnet.agent import memtrim


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def burst(keep: list[bytes]) -> None:
    blocks = [bytes(600) + i.to_bytes(4, "big") for i in range(150_000)]   # > 512 B: glibc's malloc
    keep.extend(blocks[::200])                                              # a few survive, scattered
    del blocks


def test_a_burst_on_a_thread_is_given_back() -> None:
    keep: list[bytes] = []
    t = threading.Thread(target=burst, args=(keep,))
    t.start()
    t.join()
    before = rss_kib()
    assert memtrim.give_back()
    after = rss_kib()
    assert after < before - 40_000, f"RSS {before} → {after} KiB: the burst's free pages should go back"
    assert len(keep) == 750
