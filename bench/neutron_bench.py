"""podnet-neutron-ipam's numbers against a real Neutron (issue 31): ADD latency with and without the
agent's ready-port pool, at K concurrent ADDs, ports per second, and Neutron's CPU per pod.

Usage (root): .venv/bin/python bench/neutron_bench.py [--pods 24] [--rounds 5] [--db mariadb|sqlite]

One Neutron (lab/neutron.py; MariaDB by default: sqlite serialises every request) on loopback and one
podnet agent in this netns (routing off: it only serves CNI requests).  Each round, for K in (1, 8)
and each side (pool: poolSize 8, refilled in the background; no pool: a port create per ADD), --pods
ADDs are run K at a time through the installed launcher and the agent, each timed from exec to
exit, then all are deleted.  Pairs: cidr (one per node block).  Reported per (K, side): ADD p50 and
p99 over all rounds, pods/s (pods over the wall time of the ADDs), Neutron CPU seconds (user+sys of
every gunicorn/mariadbd process) per pod; and the median over rounds of the paired ratio
pool / no pool of the per-round ADD p50.  The pool side waits until its pool is full before a round
(the steady state: pods arrive slower than the keeper makes ports) — a burst larger than the pool
falls back to creating ports."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from podnet.lab.neutron import NeutronServer


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def server_pids(server: NeutronServer) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if str(server.work) in cmd and ("gunicorn" in cmd or "mariadbd" in cmd):
                out.append(int(entry))
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def run_cni(bin_dir: str, cmd: str, conf: dict[str, Any], cid: str) -> float:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": cmd, "CNI_CONTAINERID": cid,
           "CNI_NETNS": "/run/netns/unused", "CNI_IFNAME": "eth0", "CNI_PATH": bin_dir}
    t0 = time.perf_counter()
    p = subprocess.run([f"{bin_dir}/podnet-neutron-ipam"], input=json.dumps(conf).encode(), env=env,
                       capture_output=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} {cid}: {p.stdout.decode()[:300]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--db", choices=("mariadb", "sqlite"), default="mariadb")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pn-nbench-")
    bin_dir = os.path.join(work, "bin")
    subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--bin-dir", bin_dir], check=True,
                   capture_output=True)
    server = NeutronServer(db=a.db, max_pairs=100, quota_port=100000).start()
    sock = os.path.join(work, "agent.sock")
    agent = subprocess.Popen([sys.executable, "-m", "podnet.cli", "agent", "--socket", sock, "--log-file",
                              os.path.join(work, "agent.log"), "--state-dir", os.path.join(work, "state")])
    try:
        while not os.path.exists(sock):
            time.sleep(0.05)
        net = server.create("network", name="bench")
        sub = server.create("subnet", network_id=net["id"], ip_version=4, cidr="10.30.0.0/16", gateway_ip="10.30.0.1",
                            allocation_pools=[{"start": "10.30.0.10", "end": "10.30.0.250"}])
        server.create("port", network_id=net["id"], name="vm", device_owner="compute:nova",
                      fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.30.0.5"}])
        base = {"cniVersion": "1.0.0", "name": "bench", "type": "podnet-macvlan", "agentSocket": sock}
        ipam = {"type": "podnet-neutron-ipam", "neutronUrl": server.url, "network": "bench", "node": "b1",
                "nodeAddress": "10.30.0.5", "addressPairs": "cidr", "podRange": "10.30.128.0/17", "blockSize": 26}
        sides = {"pool": dict(base, ipam=dict(ipam, poolSize=8)), "no pool": dict(base, ipam=ipam)}
        pids = server_pids(server)
        results: dict[tuple[int, str], dict[str, list[float]]] = {}
        ratios: dict[int, list[float]] = {1: [], 8: []}
        for r in range(a.rounds):
            for k in (1, 8):
                p50s = {}
                order = ["pool", "no pool"] if r % 2 == 0 else ["no pool", "pool"]
                for side in order:
                    conf = sides[side]
                    if side == "pool":
                        run_cni(bin_dir, "ADD", conf, "warm")       # the keeper starts; wait for a full pool
                        run_cni(bin_dir, "DEL", conf, "warm")
                        deadline = time.monotonic() + 120
                        while len(server.ports(network_id=net["id"], device_owner="podnet:pool")) < 8:
                            if time.monotonic() > deadline:
                                raise RuntimeError("the pool never filled")
                            time.sleep(0.2)
                    cids = [f"r{r}k{k}{side[0]}{i}" for i in range(a.pods)]
                    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
                    with ThreadPoolExecutor(k) as pool:
                        lat = list(pool.map(lambda c, conf=conf: run_cni(bin_dir, "ADD", conf, c), cids))
                    wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
                    with ThreadPoolExecutor(4) as pool:
                        list(pool.map(lambda c, conf=conf: run_cni(bin_dir, "DEL", conf, c), cids))
                    res = results.setdefault((k, side), {"lat": [], "pps": [], "cpu": []})
                    res["lat"] += lat
                    res["pps"].append(a.pods / wall)
                    res["cpu"].append(cpu / a.pods)
                    p50s[side] = statistics.median(lat)
                ratios[k].append(p50s["pool"] / p50s["no pool"])
            print(f"round {r + 1}: " + ", ".join(f"K={k} pool/no-pool p50 {ratios[k][-1]:.2f}" for k in (1, 8)),
                  flush=True)
        print(f"\nneutron 29 ({a.db}), {a.pods} pods × {a.rounds} rounds per (K, side), through the agent, pairs cidr")
        print(f"{'K':>2} {'side':8} {'ADD p50':>9} {'ADD p99':>9} {'pods/s':>7} {'Neutron CPU/pod':>16}")
        for (k, side), res in sorted(results.items()):
            print(f"{k:>2} {side:8} {1000 * statistics.median(res['lat']):7.0f}ms {1000 * pct(res['lat'], 0.99):7.0f}ms "
                  f"{statistics.median(res['pps']):7.1f} {1000 * statistics.median(res['cpu']):13.0f} ms")
        for k in (1, 8):
            print(f"K={k}: median paired ratio pool / no pool of ADD p50 = {statistics.median(ratios[k]):.2f} "
                  f"[{min(ratios[k]):.2f}..{max(ratios[k]):.2f}] over {a.rounds} rounds")
    finally:
        agent.terminate()
        agent.wait(10)
        server.stop()
        subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
