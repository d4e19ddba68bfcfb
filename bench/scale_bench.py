"""Scale on one machine: N nodes × M pods in the virtual cluster, and what it costs.

Usage (root): .venv/bin/python bench/scale_bench.py [--nodes 20] [--pods-per-node 50]
              [--backend vxlan|host-gw] [--rest 30] [--trials 10] [--churn 1000]

Prints, in order: time to all pods ready and route convergence after the last pod; at rest
(--rest seconds, nothing happening) each agent's RSS, CPU and wakeups (context switches of all
its threads) and etcd's request rate; kernel routes and neighbour entries per node; a churn of
--churn pod deletions and re-creations (pod ADD p50 against the fill's, agents' CPU/RSS, etcd
requests/s and DB size before and after); node join and `node rm` convergence over --trials.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.lab import Cluster
from podnet.net import netns

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK      # utime + stime, all threads


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def uss_mib(pid: int) -> float:
    """Memory only this process holds (private pages: what another agent would not share)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def wakeups(pid: int) -> int:
    """Context switches of every thread: each is the thread going to sleep or being preempted —
    a count of wakeups, near enough, for an idle process."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def etcd_metrics(c: Cluster) -> dict[str, float]:
    """etcd's /metrics (served on its client URL, inside the fabric netns): requests handled
    (all gRPC methods) and the DB size."""
    with netns.opened(f"/run/netns/{c.fab}") as fd, netns.entered(fd):
        text = urllib.request.urlopen(f"{c.etcd_url}/metrics", timeout=5).read().decode()
    out = {"requests": 0.0, "db_bytes": 0.0, "db_in_use": 0.0}
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{"):
            out["requests"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("etcd_mvcc_db_total_size_in_bytes "):
            out["db_bytes"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("etcd_mvcc_db_total_size_in_use_in_bytes "):
            out["db_in_use"] = float(line.rsplit(" ", 1)[1])
    return out


def agents(c: Cluster) -> dict[int, int]:
    return {i: c.procs[f"agent{i}"].pid for i in c.live if f"agent{i}" in c.procs}


Sample = tuple[dict[int, float], dict[int, float], dict[int, float], dict[int, float]]


def sample_agents(c: Cluster, seconds: float) -> Sample:
    """(CPU %, RSS MiB, private MiB, context switches/s) per agent over `seconds`."""
    pids = agents(c)
    cpu0 = {i: cpu_seconds(p) for i, p in pids.items()}
    wk0 = {i: wakeups(p) for i, p in pids.items()}
    time.sleep(seconds)             # a measurement window, not synchronisation
    cpu = {i: 100 * (cpu_seconds(p) - cpu0[i]) / seconds for i, p in pids.items()}
    wk = {i: (wakeups(p) - wk0[i]) / seconds for i, p in pids.items()}
    rss = {i: rss_mib(p) for i, p in pids.items()}
    uss = {i: uss_mib(p) for i, p in pids.items()}
    return cpu, rss, uss, wk


def loop_wakeups(c: Cluster) -> dict[int, float]:
    """Each agent's routing-loop wakeups so far (podnet_routing_wakeups_total, from its /metrics)."""
    from podnet.wire import http_get_unix
    out = {}
    for i in c.live:
        _, body = http_get_unix(c.sock(i), "/metrics", timeout=5)
        for line in body.decode().splitlines():
            if line.startswith("podnet_routing_wakeups_total "):
                out[i] = float(line.split()[1])
    return out


def summary(name: str, values: dict[int, float], unit: str) -> str:
    v = list(values.values())
    return f"{name}: median {statistics.median(v):.2f}{unit}, max {max(v):.2f}{unit}"


def node_tables(c: Cluster) -> tuple[list[int], list[int]]:
    routes, neigh = [], []
    for i in c.live:
        ns = c.nodes[i]
        r = subprocess.run(["ip", "-n", ns, "route", "show", "table", "all"], capture_output=True, text=True).stdout
        r6 = subprocess.run(["ip", "-n", ns, "-6", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
        n = subprocess.run(["ip", "-n", ns, "neigh", "show"], capture_output=True, text=True).stdout
        routes.append(len(r.splitlines()) + len(r6.splitlines()))
        neigh.append(len(n.splitlines()))
    return routes, neigh


def wait_routed(c: Cluster, nodes: list[int], ip: str, routed: bool, timeout: float = 30.0) -> float:
    """Seconds until every node routes `ip` by a route of its own (routed) or only by its default
    route (not routed): one route lookup per node per check (RTM_F_FIB_MATCH), over sockets
    opened in advance — a dump of every node's routes per check took ~0.4 s at 1000 pods."""
    import contextlib
    import ipaddress

    from podnet.net.rtnl import open_rtnl
    dst = ipaddress.ip_address(ip)
    with contextlib.ExitStack() as stack:
        socks = []
        for i in nodes:
            fd = stack.enter_context(netns.opened(f"/run/netns/{c.nodes[i]}"))
            socks.append(stack.enter_context(open_rtnl(fd)))
        t0 = time.perf_counter()
        while True:
            if all(((s.matched_prefix(dst) or 0) > 0) == routed for s in socks):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{ip}: not {'routed' if routed else 'unrouted'} everywhere after {timeout}s")
            time.sleep(0.002)            # polling the condition


def timed_add(c: Cluster, node: int) -> float:
    t = time.perf_counter()
    c.add_pod(node)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--pods-per-node", type=int, default=50)
    ap.add_argument("--backend", default="vxlan")
    ap.add_argument("--rest", type=float, default=30.0)
    ap.add_argument("--route-interval", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--churn", type=int, default=1000)
    a = ap.parse_args()
    # lease renewed every ttl/3 = route-interval: the renewal rides the periodic pass
    c = Cluster(a.nodes, a.backend, lease_ttl=int(3 * a.route_interval), route_interval=a.route_interval)
    try:
        t0 = time.perf_counter()
        c.up()
        print(f"{a.backend}: {a.nodes} nodes, etcd and agents ready in {time.perf_counter() - t0:.1f}s "
              f"(route-interval {c.route_interval}s)")
        fill: list[float] = []
        t1 = time.perf_counter()
        for _k in range(a.pods_per_node):
            for i in range(a.nodes):
                fill.append(timed_add(c, i))
        t_pods = time.perf_counter() - t1
        conv = c.wait_converged(60)
        print(f"{len(c.pods)} pods ready in {t_pods:.1f}s (ADD p50 {1000 * statistics.median(fill):.0f} ms, "
              f"p99 {1000 * pct(fill, 0.99):.0f} ms); routes converged {1000 * conv:.0f} ms after the last pod")

        e0, w0 = etcd_metrics(c), loop_wakeups(c)
        cpu, rss, uss, wk = sample_agents(c, a.rest)
        e1, w1 = etcd_metrics(c), loop_wakeups(c)
        per_interval = {i: (w1[i] - w0[i]) * a.route_interval / a.rest for i in w1}
        print(f"at rest ({a.rest:.0f}s): agent {summary('CPU', cpu, '%')}; {summary('RSS', rss, ' MiB')} "
              f"({summary('private', uss, ' MiB')}); "
              f"routing loop {summary('wakeups', per_interval, ' per route-interval')}; process "
              f"{summary('context switches', wk, '/s')} (all threads, grpc's included); "
              f"etcd {(e1['requests'] - e0['requests']) / a.rest:.1f} req/s, "
              f"DB {e1['db_bytes'] / 2**20:.1f} MiB ({e1['db_in_use'] / 2**20:.1f} in use)")
        routes, neigh = node_tables(c)
        print(f"kernel tables per node: routes median {statistics.median(routes):.0f} (max {max(routes)}), "
              f"neighbour entries median {statistics.median(neigh):.0f} (max {max(neigh)})")

        pids = agents(c)
        cpu0 = {i: cpu_seconds(p) for i, p in pids.items()}
        e0 = etcd_metrics(c)
        churn: list[float] = []
        peak_rss: dict[int, float] = {}
        t2 = time.perf_counter()
        for n in range(a.churn):
            pod = c.pods[0]
            c.del_pod(pod)
            churn.append(timed_add(c, pod.node))
            if n % 100 == 99:
                for i, p in pids.items():
                    peak_rss[i] = max(peak_rss.get(i, 0.0), rss_mib(p))
        t_churn = time.perf_counter() - t2
        e1 = etcd_metrics(c)
        ccpu = {i: 100 * (cpu_seconds(p) - cpu0[i]) / t_churn for i, p in pids.items()}
        print(f"churn ({a.churn} deletions + re-creations in {t_churn:.0f}s): ADD p50 "
              f"{1000 * statistics.median(churn):.0f} ms = {statistics.median(churn) / statistics.median(fill):.2f}x "
              f"the fill's; agent {summary('CPU', ccpu, '%')}; {summary('peak RSS', peak_rss, ' MiB')}; "
              f"etcd {(e1['requests'] - e0['requests']) / t_churn:.1f} req/s, DB {e0['db_bytes'] / 2**20:.1f} → "
              f"{e1['db_bytes'] / 2**20:.1f} MiB ({e1['db_in_use'] / 2**20:.1f} in use)")
        c.wait_converged(60)

        joins, leaves = [], []
        for _ in range(a.trials):
            j = c.add_node()
            pod = c.add_pod(j)
            joins.append(wait_routed(c, [i for i in c.live if i != j], pod.ip, True))
            c.kill_agent(j)                     # as remove_node does; timed from `podnet node rm`'s return
            c.podnet("node", "rm", f"n{j + 1}")
            leaves.append(wait_routed(c, [i for i in c.live if i != j], pod.ip, False))
            c.remove_node_namespaces(j)
        print(f"node join at {a.nodes + 1} nodes (its first pod's block routed on every node, from the ADD's "
              f"return): p50 {1000 * statistics.median(joins):.0f} ms, p99 {1000 * pct(joins, 0.99):.0f} ms; "
              f"node rm (its routes gone on every node, from the CLI's return): p50 "
              f"{1000 * statistics.median(leaves):.0f} ms, p99 {1000 * pct(leaves, 0.99):.0f} ms  "
              f"({a.trials} trials each)")
    finally:
        c.down()
    return 0


if __name__ == "__main__":
    from podnet.lab import ends_cleanly_on_signals
    sys.stdout.reconfigure(line_buffering=True)   # type: ignore[union-attr]
    with ends_cleanly_on_signals():
        sys.exit(main())
