"""memtrim: after a burst, the freed heap goes back to the kernel (this machine's glibc has
malloc_trim), so the agent's RSS does not stay at the burst's peak.  The burst is what libnftables
does on an agent thread: many C-heap blocks in a thread's arena, a few of them still alive
afterwards — glibc keeps the free pages between them until trimmed."""
from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

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


def test_after_the_whole_table_the_collector_skips_what_lives_on(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """After a whole policy table the long-lived objects (the cluster's pods, the table) are
    frozen out of the cyclic collector's way: a full collection then walks only what came later,
    not the whole heap (at 150 000 pods ~0.35 s, a pause in the middle of pod events)."""
    from podnet.agent.policy.engine import PolicyEngine
    from podnet.net import policy_nft
    monkeypatch.setattr(policy_nft, "apply", lambda script: None)
    gc.unfreeze()
    try:
        e = PolicyEngine("n1", str(tmp_path))
        pods = {f"d/p{k}": {"metadata": {"namespace": "d", "name": f"p{k}", "labels": {"app": f"a{k % 7}"}},
                            "status": {"podIP": f"10.1.{k // 250}.{k % 250 + 1}"}} for k in range(20_000)}
        e.set_all(pods=pods, namespaces={"d": {}}, policies={}, cluster_policies={})
        assert gc.get_freeze_count() > 20_000, "the pods should be frozen out of the collector's way"
        assert len(gc.get_objects()) < gc.get_freeze_count() / 2, "the collector still tracks the frozen heap"
    finally:
        gc.unfreeze()
