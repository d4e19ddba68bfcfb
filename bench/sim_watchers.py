"""The API server's side of a big cluster (issue 35): K simulated agents watching one kube-apiserver.

The cluster is bench/sim_cluster.py's (N nodes, 30 × N Pods with IPs, 200 NetworkPolicies, the
lab's real kube-apiserver and etcd).  K watchers (bench/watchers, Go, stdlib only) each do what a
podnet agent's informers do — list Pods, Namespaces, NetworkPolicies and Nodes in pages of 500,
then watch all four with bookmarks — each on its own HTTP/1.1 connections with podnet's
ServiceAccount token, started over `--spread` seconds (a DaemonSet rollout, not one instant).  Once
all are watching, a writer relabels Pods at `--rate` per second, stamping each PATCH's send time in
an annotation; every watcher records now − sent for each Pod event: the watch latency K agents see.

Measured per K: the time until all K have listed, list time per watcher p50/p99, watch latency
p50/p99/max, events delivered, bytes the API server sent, kube-apiserver CPU (cores, from
/proc/PID/stat) during the lists and during the watch phase, its RSS at the end.

    .venv/bin/python bench/sim_watchers.py --nodes 100 --k 50,200,500 [--rate 50] [--seconds 20]   (root, go)

`--relay`: the same K watchers read from one `podnet relay` (lab/relay.py, in the fabric beside
the API server) instead of the API server: the API server then serves the relay's one list and
watch per kind; the relay's CPU and RSS are measured beside the API server's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from podnet.lab import relay as lab_relay
from policy_bench import APPS, NAMESPACES
from sim_cluster import loaded_cluster, proc_rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def build(out_dir: str) -> str:
    path = os.path.join(out_dir, "watchers")
    subprocess.run(["go", "build", "-o", path, "."], cwd=os.path.join(HERE, "watchers"), check=True,
                   env={**os.environ, "CGO_ENABLED": "0"})
    return path


def apiserver_pid() -> int:
    out = subprocess.run(["pgrep", "-f", "kube-apiserver"], capture_output=True, text=True).stdout.split()
    return int(out[0])


def relay_pid(c: Any) -> int:
    """The relay's python (its Popen is `ip netns exec`, which execs into it: the same pid)."""
    return int(c.procs["relay"].pid)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_k(c: Any, load: Any, items: list[Any], binary: str, k: int, rate: float, seconds: float, spread: float,
          work: str, relay: bool = False) -> dict[str, Any]:
    from lightkube.resources.core_v1 import Pod
    from lightkube.types import PatchType
    with open(c.kubeconfig_path) as f:
        kc = json.load(f)
    token = os.path.join(work, "token")
    with open(token, "w") as f:
        f.write(kc["users"][0]["user"]["token"])
    cluster = kc["clusters"][0]["cluster"]
    ready = os.path.join(work, f"ready-{k}")
    server = cluster["server"]
    pids = {"apiserver": apiserver_pid()}
    if relay:
        from podnet.lab.cluster import ETCD_ADDR
        server = lab_relay.url(ETCD_ADDR)
        pids["relay"] = relay_pid(c)
    cpu0, t0 = {n: cpu_s(p) for n, p in pids.items()}, time.monotonic()
    proc = subprocess.Popen(["ip", "netns", "exec", c.fab, binary, "-server", server, "-ca",
                             cluster["certificate-authority"], "-token-file", token, "-k", str(k), "-spread",
                             str(spread), "-run", str(seconds + 5), "-ready-file", ready],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not os.path.exists(ready):
        if proc.poll() is not None:
            raise RuntimeError(f"watchers exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        time.sleep(0.1)
    cpu1, t1 = {n: cpu_s(p) for n, p in pids.items()}, time.monotonic()
    rng = random.Random(k)

    def relabel(item: tuple[int, int, dict[str, str]]) -> None:
        kk, j, _ = item
        ns, name = NAMESPACES[(kk * 31 + j) % len(NAMESPACES)], f"sim{kk:05d}-{j:02d}"
        load.admin.patch(Pod, name, {"metadata": {"labels": {"app": rng.choice(APPS)},
                                                  "annotations": {"bench.podnet.io/sent": str(time.time_ns())}}},
                         namespace=ns, patch_type=PatchType.MERGE)

    events = int(rate * seconds)
    futures = []
    w0 = time.monotonic()
    for i in range(events):
        time.sleep(max(0.0, w0 + i / rate - time.monotonic()))
        futures.append(load.pool.submit(relabel, rng.choice(items)))
    for fu in futures:
        fu.result()
    cpu2, t2 = {n: cpu_s(p) for n, p in pids.items()}, time.monotonic()
    out_s, err_s = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"watchers: exit {proc.returncode}: {err_s[-2000:]}")
    got: dict[str, Any] = json.loads(out_s)
    for n in pids:
        got[f"{n}_cpu_cores_listing"] = round((cpu1[n] - cpu0[n]) / (t1 - t0), 2)
        got[f"{n}_cpu_cores_watching"] = round((cpu2[n] - cpu1[n]) / (t2 - t1), 2)
    got.update({"apiserver_rss_mib": proc_rss_mib("kube-apiserver"), "writes": events,
                "expected_stamped_events": events * k, "via": "relay" if relay else "apiserver"})
    if relay:
        got["relay_rss_mib"] = proc_rss_mib("podnet.cli relay")
    return got


def main() -> int:
    # SIGTERM (a timeout, a kill) unwinds like an error: the lab is taken down, not left running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--k", default="50,200,500")
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--spread", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--relay", action="store_true", help="the watchers read from a podnet relay")
    a = ap.parse_args()
    out: dict[str, Any] = {"nodes": a.nodes, "pods": a.nodes * a.pods_per_node, "policies": a.policies, "runs": []}
    with tempfile.TemporaryDirectory(prefix="pnbench-watchers-") as work:
        binary = build(work)
        with loaded_cluster(a.nodes, "vxlan", a.pods_per_node, a.policies, random.Random(a.seed), out) as (
                c, load, items, _local, _last):
            if a.relay:
                lab_relay.start_in(c, keep_annotations=("bench.podnet.io/",))
                out["relay_ready_s"] = round(c.timings["relay_ready"], 1)
            for k in (int(x) for x in a.k.split(",")):
                r = run_k(c, load, items, binary, k, a.rate, a.seconds, a.spread, work, a.relay)
                print(json.dumps(r), flush=True)
                out["runs"].append(r)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
