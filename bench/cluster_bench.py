"""Virtual-cluster numbers: setup time (3 and 10 nodes), route convergence after a node joins
and leaves, and TCP throughput pod→pod across nodes (host-gw, vxlan) beside the same node and a
plain veth pair.  Usage (root): .venv/bin/python bench/cluster_bench.py"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.lab import Cluster  # noqa: E402
from tests.helpers.traffic import measure_bits_per_second  # noqa: E402


def setup_time(nodes: int, pods: int, backend: str) -> None:
    t0 = time.perf_counter()
    c = Cluster(nodes, backend)
    try:
        c.up()
        t1 = time.perf_counter()
        for i in range(nodes):
            for _ in range(pods):
                c.add_pod(i)
        t2 = time.perf_counter()
        conv = c.wait_converged(30)
        print(f"{backend}: {nodes} nodes x {pods} pods: nodes+etcd+agents {t1 - t0:.1f}s, pods {t2 - t1:.1f}s "
              f"({(t2 - t1) / (nodes * pods) * 1000:.0f} ms/pod), converged {conv * 1000:.0f} ms after the last pod")
        if nodes >= 3:
            c.kill_agent(nodes - 1)
            t3 = time.perf_counter()
            while any(f"10.97.0.{nodes}" in c.podnet_routes(i).values() for i in range(nodes - 1)):
                time.sleep(0.02)
            print(f"  node leave (agent killed, lease TTL {c.lease_ttl}s): routes gone after "
                  f"{time.perf_counter() - t3:.2f}s")
            t4 = time.perf_counter()
            c.start_agent(nodes - 1)
            c.wait_converged(30)
            print(f"  node join (agent started): routes back after {time.perf_counter() - t4:.2f}s")
    finally:
        c.down()


def throughput(backend: str) -> None:
    c = Cluster(2, backend)
    try:
        c.up()
        a, b, a2 = c.add_pod(0), c.add_pod(1), c.add_pod(0)
        c.wait_converged(10)
        cross = measure_bits_per_second(a.name, b.name, b.ip, window=3.0)
        same = measure_bits_per_second(a.name, a2.name, a2.ip, window=3.0, port=5202)
        print(f"{backend}: pod->pod TCP across nodes {cross / 1e9:.2f} Gbit/s, same node {same / 1e9:.2f} Gbit/s, "
              f"ratio {cross / same:.2f}")
    finally:
        c.down()


def veth_baseline() -> None:
    a, b = f"pnbase{os.getpid()}a", f"pnbase{os.getpid()}b"
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", a, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
                        "netns", b], check=True)
        for ns, dev, ip in ((a, "v0", "192.168.250.1/24"), (b, "v1", "192.168.250.2/24")):
            subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", ip, "dev", dev], check=True)
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"], check=True)
        bps = measure_bits_per_second(a, b, "192.168.250.2", window=3.0, port=5203)
        print(f"plain veth pair baseline: {bps / 1e9:.2f} Gbit/s")
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    for be in ("vxlan", "host-gw"):
        setup_time(3, 3, be)
    setup_time(10, 10, "vxlan")
    veth_baseline()
    for be in ("host-gw", "vxlan"):
        throughput(be)
