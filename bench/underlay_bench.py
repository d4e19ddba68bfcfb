"""pod-network underlay against routed (host-gw), on real nodes, in one run (issue 30's numbers).

Usage (root): .venv/bin/python bench/underlay_bench.py [--nodes 2] [--pods 30] [--rounds 5] [--seconds 3]

Two kubelet labs side by side (lab/kubecluster.py), both with podnet by its DaemonSet and NetworkPolicy
on: one routed over host-gw, one underlay (macvlan + leg, cluster IPAM on etcd).  Reported, rounds
paired (the two sides alternately first) with the median of the per-round ratios underlay / routed:
  - pod startup: --pods bare pods created at once, the time from the create to each pod Running with
    its IP (polled every 0.2 s through the API, as bench/kubelet_bench.py), p50 and p95;
  - pod ↔ pod TCP across nodes: iperf3 (the machine's) between a pod on n1 and a pod on n2, run in
    the pods' network namespaces, --seconds per round, Gbit/s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from typing import Any

from kubelet_bench import pct, startup_round  # type: ignore[import-not-found]
from podnet.lab import kubechecks as kc
from podnet.lab.images import PROBE
from podnet.lab.kubecluster import KubeletCluster


def iperf_pair(lab: KubeletCluster) -> tuple[str, str, str]:
    """(server netns, client netns, server IP) of two probe pods on different nodes."""
    pods = kc.running_pods(lab, f"{kc.PROBE_LABEL}=tput")
    a = next(p for p in pods if p.node == "n1")
    b = next(p for p in pods if p.node == "n2")
    return lab.pod_netns("default", b.name), lab.pod_netns("default", a.name), b.ip


def throughput(lab: KubeletCluster, seconds: float) -> float:
    """Gbit/s of one iperf3 TCP stream from a pod on n1 to a pod on n2."""
    server_ns, client_ns, server_ip = iperf_pair(lab)
    server = subprocess.Popen(["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1", "-p", "5299"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            p = subprocess.run(["nsenter", f"--net={client_ns}", "iperf3", "-c", server_ip, "-p", "5299", "-t",
                                str(seconds), "-J"], capture_output=True, text=True)
            if p.returncode == 0:
                return float(json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
            if time.monotonic() > deadline:
                raise RuntimeError(f"iperf3: {p.stdout[-300:]} {p.stderr[-300:]}")
            time.sleep(0.2)          # the server is not listening yet
    finally:
        server.kill()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    labs = {"routed": KubeletCluster(a.nodes, backend="host-gw"),
            "underlay": KubeletCluster(a.nodes, pod_network="underlay")}
    ratios: dict[str, list[float]] = {"p50": [], "p95": [], "gbps": []}
    try:
        for lab in labs.values():
            lab.up()
            kc.apply(lab, kc.deployment("tput", PROBE, 2))
            lab.kubectl("rollout", "status", "deployment/tput", "--timeout=120s", timeout=130)
        for r in range(a.rounds):
            order = ["routed", "underlay"] if r % 2 == 0 else ["underlay", "routed"]
            got: dict[str, Any] = {}
            for side in order:
                times = startup_round(labs[side], a.pods, r)
                got[side] = (pct(times, 0.5), pct(times, 0.95), throughput(labs[side], a.seconds))
            for i, key in enumerate(("p50", "p95", "gbps")):
                ratios[key].append(got["underlay"][i] / got["routed"][i])
            print(f"round {r + 1}: " + " | ".join(f"{s} startup p50 {got[s][0]:.2f} s p95 {got[s][1]:.2f} s, "
                                                   f"TCP {got[s][2]:.2f} Gbit/s" for s in ("routed", "underlay")),
                  flush=True)
        print(f"median paired ratio underlay / routed over {a.rounds} rounds: startup p50 "
              f"{statistics.median(ratios['p50']):.2f}, p95 {statistics.median(ratios['p95']):.2f}; "
              f"TCP pod ↔ pod across nodes {statistics.median(ratios['gbps']):.2f} "
              f"[{min(ratios['gbps']):.2f}..{max(ratios['gbps']):.2f}]")
    finally:
        for lab in labs.values():
            lab.down()


if __name__ == "__main__":
    main()
