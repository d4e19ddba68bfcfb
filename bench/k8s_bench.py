"""The Kubernetes datastore against the real control plane, beside the etcd datastore, same run:
control plane up, 3 nodes ready, and convergence when a node joins (its first pod's block routed
on every other node) and leaves (kubectl delete node / podnet node rm: its routes gone everywhere).

    .venv/bin/python bench/k8s_bench.py [--trials 5]      (root; needs scripts/k8s-build.sh once)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.lab import FABRIC_NET, Cluster


def wait(pred, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("timeout")
        time.sleep(0.002)
    return time.monotonic() - t0


def one(datastore: str, trials: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"up": [], "join": [], "leave": []}
    t0 = time.monotonic()
    c = Cluster(3, "vxlan", datastore=datastore, ipam_mode="host-local" if datastore == "etcd" else "cluster")
    try:
        c.up()
        out["up"].append(time.monotonic() - t0)
        if c.timings:
            out.setdefault("apiserver_ready", []).append(c.timings["apiserver_ready"])
        for i in range(3):
            c.add_pod(i)
        c.wait_converged(30)
        for _ in range(trials):
            j = c.add_node()
            c.add_pod(j)
            out["join"].append(c.wait_converged(30))
            c.kill_agent(j)
            t = time.monotonic()
            if c.kube is not None:
                c.kube.delete_node(f"n{j + 1}")
            else:
                c.podnet("node", "rm", f"n{j + 1}")
            wait(lambda j=j: all(f"{FABRIC_NET}.{j + 1}" not in c.podnet_routes(i).values() for i in range(3)))
            out["leave"].append(time.monotonic() - t)
            c.remove_node_namespaces(j)
    finally:
        c.down()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    a = ap.parse_args()
    for ds in ("kubernetes", "etcd"):
        r = one(ds, a.trials)
        ms = {k: [round(x * 1000) for x in v] for k, v in r.items()}
        print(f"{ds}: lab up (3 nodes ready) {r['up'][0]:.1f}s"
              + (f", kube-apiserver ready {r['apiserver_ready'][0]:.1f}s" if "apiserver_ready" in r else "")
              + f"; node join → routed everywhere p50 {statistics.median(r['join']) * 1000:.0f} ms {ms['join']}"
              + f"; node delete → routes gone p50 {statistics.median(r['leave']) * 1000:.0f} ms {ms['leave']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
