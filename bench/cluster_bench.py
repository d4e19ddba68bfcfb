"""Virtual-cluster numbers: setup time (3 and 10 nodes), route convergence after a node joins
and leaves, and TCP throughput pod→pod across nodes (host-gw, vxlan) beside the same node and a
plain veth pair.  Usage (root): .venv/bin/python bench/cluster_bench.py [--throughput]"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.lab import Cluster
from tests.helpers.traffic import measure_bits_per_second


def setup_time(nodes: int, pods: int, backend: str, ipam_mode: str = "cluster") -> None:
    t0 = time.perf_counter()
    c = Cluster(nodes, backend, ipam_mode=ipam_mode)
    try:
        c.up()
        t1 = time.perf_counter()
        for i in range(nodes):
            for _ in range(pods):
                c.add_pod(i)
        t2 = time.perf_counter()
        conv = c.wait_converged(30)
        print(f"{backend}/{ipam_mode}: {nodes} nodes x {pods} pods: nodes+etcd+agents ready {t1 - t0:.1f}s, "
              f"pods {t2 - t1:.1f}s ({(t2 - t1) / (nodes * pods) * 1000:.0f} ms/pod), "
              f"converged {conv * 1000:.0f} ms after the last pod")
        if nodes >= 3:
            gone = f"10.97.0.{nodes}"
            t3 = time.perf_counter()
            c.remove_node(nodes - 1)
            t3b = time.perf_counter()
            while any(gone in c.podnet_routes(i).values() for i in c.live):
                time.sleep(0.005)
            print(f"  node leave (podnet node rm): routes gone on every node {(time.perf_counter() - t3b) * 1000:.0f} ms "
                  f"after the removal ({(t3b - t3) * 1000:.0f} ms to stop the agent and run the CLI)")
            victim = nodes - 2
            c.kill_agent(victim)
            t4 = time.perf_counter()
            while any(f"10.97.0.{victim + 1}" in c.podnet_routes(i).values() for i in c.live if i != victim):
                time.sleep(0.01)
            print(f"  node dead (agent SIGKILLed, lease TTL {c.lease_ttl}s): routes gone after "
                  f"{time.perf_counter() - t4:.2f}s")
            c.start_agent(victim)
            c.wait_converged(30)
            j = c.add_node()
            t5 = time.perf_counter()
            c.add_pod(j)
            t6 = time.perf_counter()
            conv = c.wait_converged(30)
            print(f"  node join (new node, its first pod: {(t6 - t5) * 1000:.0f} ms): its block routed on every "
                  f"node {conv * 1000:.0f} ms after the pod's ADD returned")
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
        setup_time(3, 10, be)
    setup_time(3, 10, "vxlan", "host-local")
    setup_time(10, 10, "vxlan")
    setup_time(10, 10, "host-gw")
    if "--throughput" in sys.argv:
        veth_baseline()
        for be in ("host-gw", "vxlan"):
            throughput(be)
