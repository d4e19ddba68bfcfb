"""Cluster IPAM allocation benchmark: podnet-cluster-ipam's allocator against a real etcd,
beside host-local's file store doing the same work.

Usage (root not needed): .venv/bin/python bench/ipam_bench.py [--allocs 2000]
Starts a throwaway etcd (Debian's etcd-server) on loopback with a temp data dir, and:
  1 node, sequential allocations (latency p50/p99, allocations/s);
  3 nodes x K=8 threads (allocations/s total, p50/p99);
counting etcd requests per allocation (reads and write transactions) by wrapping the client.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.ipam import allocator
from podnet.ipam.cluster import ClusterIpam, Pool
from podnet.ipam.etcdkv import EtcdKV
from podnet.ipam.filestore import FileStore
from podnet.ipam.ranges import parse_range_sets
from podnet.ipam.store import Handle
from tests.helpers.etcd import Etcd


class Counting:
    """Wraps a KV and counts what each allocation costs in etcd requests."""
    def __init__(self, kv: EtcdKV) -> None:
        self.kv, self.reads, self.txns = kv, 0, 0
        self.lock = threading.Lock()

    def get(self, key: str):  # type: ignore[no-untyped-def]
        with self.lock:
            self.reads += 1
        return self.kv.get(key)

    def get_prefix(self, prefix: str):  # type: ignore[no-untyped-def]
        with self.lock:
            self.reads += 1
        return self.kv.get_prefix(prefix)

    def txn(self, t):  # type: ignore[no-untyped-def]
        with self.lock:
            self.txns += 1
        return self.kv.txn(t)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return 1000 * xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--allocs", type=int, default=2000)
    a = ap.parse_args()
    etcd = Etcd()
    try:
        etcd.wait_healthy()
        pool = Pool("bench", ipaddress.ip_network("10.200.0.0/16"), 26)
        kv = Counting(EtcdKV([etcd.url], timeout=20))
        one = ClusterIpam(kv, "n1")
        one.ensure_pool(pool)
        one.allocate("warm/0/eth0", [pool])
        kv.reads = kv.txns = 0
        lat = []
        t0 = time.perf_counter()
        for i in range(a.allocs):
            s = time.perf_counter()
            one.allocate(f"seq/{i}/eth0", [pool])
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
        print(f"etcd, 1 node, sequential: {a.allocs} allocations, {a.allocs / wall:.0f}/s, p50 {pct(lat, .5):.2f} ms, "
              f"p99 {pct(lat, .99):.2f} ms; per allocation {kv.reads / a.allocs:.3f} reads, "
              f"{kv.txns / a.allocs:.3f} write transactions")
        kvs = [Counting(EtcdKV([etcd.url], timeout=20)) for _ in range(3)]
        nodes = [ClusterIpam(k, f"node{i}") for i, k in enumerate(kvs)]
        lat3: list[float] = []
        per = a.allocs // 24

        def worker(w: int) -> None:
            node = nodes[w % 3]
            for j in range(per):
                s = time.perf_counter()
                node.allocate(f"par/{w}-{j}/eth0", [pool])
                lat3.append(time.perf_counter() - s)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(24) as ex:
            list(ex.map(worker, range(24)))
        wall = time.perf_counter() - t0
        n = per * 24
        reads, txns = sum(k.reads for k in kvs), sum(k.txns for k in kvs)
        print(f"etcd, 3 nodes x K=8 (one process): {n} allocations, {n / wall:.0f}/s total, p50 {pct(lat3, .5):.2f} ms,"
              f" p99 {pct(lat3, .99):.2f} ms; per allocation {reads / n:.3f} reads, {txns / n:.3f} write transactions")
        assert one.check() == [], one.check()
        d = tempfile.mkdtemp()
        store = FileStore(d, "bench")
        sets = parse_range_sets({"subnet": "10.200.0.0/16"})
        lat = []
        t0 = time.perf_counter()
        for i in range(a.allocs):
            s = time.perf_counter()
            with store.session() as sess:
                allocator.allocate(sess, sets, Handle(f"c{i}", "eth0"), [])
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
        print(f"host-local file store, sequential: {a.allocs / wall:.0f}/s, p50 {pct(lat, .5):.2f} ms, "
              f"p99 {pct(lat, .99):.2f} ms")
        _ = statistics
    finally:
        etcd.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
