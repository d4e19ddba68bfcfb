"""Real nodes: podnet installed by its DaemonSet against Debian's reference plugins, in one run.

Usage (root): .venv/bin/python bench/kubelet_bench.py [--nodes 2] [--pods 50] [--rounds 5] [--no-network-policy]

Two labs with kubelet + containerd on every node (lab/kubecluster.py) live side by side: one gets
podnet by `kubectl apply` of its manifest, the other Debian's bridge + host-local (+ portmap,
loopback) in each node's podCIDR.  Reported:
  - podnet: the time from `kubectl apply -f podnet.yaml` to every node Ready (one per lab built);
  - pod startup: --pods bare pods of the probe image created at once (spread over the nodes), the
    time from the create to each pod Running with its IP (polled through the API every 0.2 s: the
    same granularity for both), p50 / p95 per round, rounds paired (podnet, then reference,
    alternately first), and the median of the per-round ratios.  Every pod is deleted, and gone,
    before the next round.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from podnet.lab.images import PROBE
from podnet.lab.kubecluster import KubeletCluster


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def pods_doc(count: int, round_no: int) -> dict[str, Any]:
    items = [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": f"b{round_no}-{k}", "labels": {"bench": "startup"}},
              "spec": {"terminationGracePeriodSeconds": 0,
                       "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                      "whenUnsatisfiable": "DoNotSchedule",
                                                      "labelSelector": {"matchLabels": {"bench": "startup"}}}],
                       "containers": [{"name": "probe", "image": PROBE, "imagePullPolicy": "Never"}]}}
             for k in range(count)]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def startup_round(lab: KubeletCluster, count: int, round_no: int) -> list[float]:
    """Seconds from the create to Running-with-IP, per pod."""
    t0 = time.monotonic()
    lab.kubectl("create", "-f", "-", stdin=json.dumps(pods_doc(count, round_no)))
    seen: dict[str, float] = {}
    deadline = t0 + 300
    while len(seen) < count:
        now = time.monotonic()
        for p in lab.get("pods", "-l", "bench=startup")["items"]:
            name = p["metadata"]["name"]
            if name not in seen and p["status"].get("phase") == "Running" and p["status"].get("podIP"):
                seen[name] = now - t0
        if now > deadline:
            raise TimeoutError(f"{len(seen)}/{count} pods running after 300 s")
        time.sleep(0.2)
    lab.kubectl("delete", "pods", "-l", "bench=startup", "--wait=true", "--timeout=300s", timeout=320)
    return list(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-network-policy", action="store_true", help="podnet's agents without NetworkPolicy")
    a = ap.parse_args()
    labs = {"podnet": KubeletCluster(a.nodes, network_policy=not a.no_network_policy),
            "reference": KubeletCluster(a.nodes, cni="reference")}
    try:
        for lab in labs.values():
            lab.up()
        print(f"podnet: kubectl apply → {a.nodes} nodes Ready in {labs['podnet'].timings['apply_to_ready']:.2f} s")
        ratios50, ratios95 = [], []
        for r in range(a.rounds):
            order = ["podnet", "reference"] if r % 2 == 0 else ["reference", "podnet"]
            got = {side: startup_round(labs[side], a.pods, r) for side in order}
            p = {side: (pct(v, 0.5), pct(v, 0.95)) for side, v in got.items()}
            ratios50.append(p["podnet"][0] / p["reference"][0])
            ratios95.append(p["podnet"][1] / p["reference"][1])
            print(f"round {r + 1}: podnet p50 {p['podnet'][0]:.2f} s p95 {p['podnet'][1]:.2f} s | reference p50 "
                  f"{p['reference'][0]:.2f} s p95 {p['reference'][1]:.2f} s | ratio p50 {ratios50[-1]:.2f} "
                  f"p95 {ratios95[-1]:.2f}", flush=True)
        print(f"median paired ratio (podnet / reference) over {a.rounds} rounds: p50 {statistics.median(ratios50):.2f}, "
              f"p95 {statistics.median(ratios95):.2f}")
    finally:
        for lab in labs.values():
            lab.down()


if __name__ == "__main__":
    main()
