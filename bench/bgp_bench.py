"""BGP on 10 nodes against the other backends, in one run.

Usage (root): .venv/bin/python bench/bgp_bench.py [--nodes 10] [--rounds 5] [--seconds 8]

For each variant — bgp full mesh, bgp with 2 route reflectors, host-gw, vxlan — a lab of
--nodes nodes is built; then each node in turn gets its first pod, and the time from that pod's
ADD starting to its block routed on every other node (and, for bgp, on the top-of-rack router)
is measured: p50 / p95 / max over the nodes.  Then, bgp only: BIRD's memory per node (RSS), the
withdrawal time of a node leaving gracefully (SIGTERM with drain-on-stop: gone from every node and
the ToR), and pod → pod TCP throughput across nodes against host-gw (iperf3, paired rounds).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from podnet.lab import Cluster
from wireguard_bench import measure, pids_named

VARIANTS = [("bgp mesh", "bgp", 0), ("bgp 2 reflectors", "bgp", 2), ("host-gw", "host-gw", 0), ("vxlan", "vxlan", 0)]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def routed_everywhere(lab: Cluster, block: str, node: int, tor: bool) -> bool:
    gw = f"10.97.0.{node + 1}"
    if any(lab.podnet_routes(j).get(block) != gw for j in lab.live if j != node):
        return False
    return not tor or lab.tor_routes().get(block) == gw


def gone_everywhere(lab: Cluster, block: str, node: int) -> bool:
    return all(block not in lab.podnet_routes(j) for j in lab.live if j != node) and block not in lab.tor_routes()


def wait(pred: object, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while not pred():          # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.005)
    return time.monotonic() - t0


def bird_rss_mib(lab: Cluster) -> list[float]:
    out = []
    for pid in (p for ns in lab.nodes for p in pids_named(ns, "bird")):
        try:
            with open(f"/proc/{pid}/status") as f:
                out.append(next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024)
        except (FileNotFoundError, StopIteration):
            continue
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    results: dict[str, list[float]] = {}
    for name, backend, reflectors in VARIANTS:
        lab = Cluster(a.nodes, backend, lease_ttl=15, route_interval=5)
        for i in range(reflectors):
            lab.node_settings[i] = {"bgp-route-reflector": True}
        if backend == "bgp":
            lab.node_settings.setdefault(a.nodes - 1, {})["drain-on-stop"] = True
        try:
            lab.up()
            times = []
            for i in range(a.nodes):
                t0 = time.monotonic()
                pod = lab.add_pod(i)
                block = str(ipaddress.ip_network(f"{pod.ip}/{lab.block_prefix}", strict=False))
                wait(lambda: routed_everywhere(lab, block, i, backend == "bgp"))      # noqa: B023
                times.append(time.monotonic() - t0)
            results[name] = times
            print(f"{name:<18} first pod ADD → block routed on every node{' and the ToR' if backend == 'bgp' else ''}: "
                  f"p50 {pct(times, 0.5) * 1000:.0f} ms, p95 {pct(times, 0.95) * 1000:.0f} ms, "
                  f"max {max(times) * 1000:.0f} ms", flush=True)
            if backend == "bgp" and reflectors == 0:
                rss = bird_rss_mib(lab)
                print(f"  BIRD RSS per node: median {statistics.median(rss):.1f} MiB, max {max(rss):.1f} MiB "
                      f"({len(rss)} processes, {a.nodes - 1} node sessions + the ToR each)")
                leaver = a.nodes - 1
                block = str(ipaddress.ip_network(f"{next(p.ip for p in lab.pods if p.node == leaver)}/"
                                                 f"{lab.block_prefix}", strict=False))
                lab.kill_agent(leaver, signal.SIGTERM)
                took = wait(lambda: gone_everywhere(lab, block, leaver))      # noqa: B023
                print(f"  graceful leave (SIGTERM, drain-on-stop): withdrawn from {a.nodes - 1} nodes and the ToR "
                      f"in {took * 1000:.0f} ms", flush=True)
        finally:
            lab.down()

    # throughput: 2-node labs, paired rounds
    labs = {}
    try:
        for name in ("host-gw", "bgp"):
            lab = Cluster(2, name)
            labs[name] = lab
            lab.up()
            lab.add_pod(0)
            lab.add_pod(1)
            lab.wait_converged(30)
        rows: dict[str, list[dict[str, float]]] = {k: [] for k in labs}
        for _ in range(a.rounds):
            for name, lab in labs.items():
                rows[name].append(measure(lab, a.seconds, 100))
        for name in labs:
            ratio = statistics.median(r["gbps"] / b["gbps"] for r, b in zip(rows[name], rows["host-gw"], strict=True))
            print(f"{name:<8} TCP pod→pod across nodes: median {statistics.median(r['gbps'] for r in rows[name]):.2f} "
                  f"Gbit/s ({ratio:.2f}× host-gw, {a.rounds} paired rounds); ping p50 "
                  f"{statistics.median(r['ping_p50'] for r in rows[name]):.3f} ms")
    finally:
        for lab in labs.values():
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
