"""What encryption costs: pod → pod across two nodes, plain backends against --encryption
wireguard (wireguard-go: this kernel has no WireGuard), all in one run.

Usage (root): .venv/bin/python bench/wireguard_bench.py [--rounds 5] [--seconds 8] [--pings 200]

Each round runs every variant once, in turn (paired: the machine's noise hits them alike):
  host-gw           plain routes
  vxlan             plain VXLAN
  host-gw+wireguard remote pod CIDRs routed into podnet.wg (the same datapath under any backend)
and measures, between a pod on n1 and a pod on n2:
  TCP throughput    iperf3, one stream, `--seconds` long (receiver's figure)
  CPU per Gbit/s    the machine's busy CPU-seconds during the iperf3 run / (Gbit/s × seconds);
                    wireguard-go's own share reported separately
  ping              round-trip time of `--pings` sequential 56-byte ICMP echoes: p50, p99
Prints each round and the medians with ratios against plain host-gw.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from podnet.lab import Cluster
from podnet.net import netns
from podnet.net.probe import icmp_checksum

CLK_TCK = os.sysconf("SC_CLK_TCK")
VARIANTS = [("host-gw", "host-gw", ""), ("vxlan", "vxlan", ""), ("host-gw+wireguard", "host-gw", "wireguard")]


def busy_seconds() -> float:
    """The whole machine's non-idle CPU time so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return (sum(vals[:8]) - idle) / CLK_TCK


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rtts(src_netns: str, dst: str, count: int) -> list[float]:
    with netns.opened(src_netns) as fd, netns.entered(fd):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    out = []
    ident = os.getpid() & 0xFFFF
    with s:
        s.settimeout(1.0)
        for seq in range(1, count + 1):
            body = os.urandom(56)
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, icmp_checksum(hdr + body), ident, seq) + body
            t0 = time.perf_counter()
            s.sendto(pkt, (dst, 0))
            while True:
                try:
                    data = s.recv(2048)
                except TimeoutError:
                    break
                icmp = data[(data[0] & 0x0F) * 4:]
                if icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                    out.append((time.perf_counter() - t0) * 1000)
                    break
            time.sleep(0.005)
    return out


def pids_named(netns_name: str, comm: str) -> list[int]:
    """The processes called `comm` in a namespace (the daemons the agents run beside them)."""
    out = []
    for pid in subprocess.run(["ip", "netns", "pids", netns_name], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    out.append(int(pid))
        except FileNotFoundError:
            continue
    return out


def wg_pid(lab: Cluster, i: int) -> int:
    """wireguard-go's pid on node i (0 if the node does not encrypt)."""
    return next(iter(pids_named(lab.nodes[i], "wireguard-go")), 0)


def measure(lab: Cluster, seconds: int, pings: int) -> dict[str, float]:
    a, b = lab.pods
    server = subprocess.Popen(["ip", "netns", "exec", b.name, "iperf3", "-s", "-1", "-B", b.ip],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "netns", "exec", b.name, "ss", "-Hltn", "sport = :5201"],
                             capture_output=True, text=True).stdout.strip() == "":
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not listen")
            time.sleep(0.05)
        wg = [p for p in (wg_pid(lab, 0), wg_pid(lab, 1)) if p]
        busy0, wg0 = busy_seconds(), sum(proc_cpu(p) for p in wg)
        t0 = time.monotonic()
        res = subprocess.run(["ip", "netns", "exec", a.name, "iperf3", "-c", b.ip, "-t", str(seconds), "-J"],
                             capture_output=True, text=True, check=True)
        took = time.monotonic() - t0
        busy, wg_cpu = busy_seconds() - busy0, sum(proc_cpu(p) for p in wg) - wg0
    finally:
        server.kill()
        server.wait()
    gbps = json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    r = sorted(rtts(a.netns, b.ip, pings))
    return {"gbps": gbps, "cpu_per_gbit": busy / (gbps * took), "wg_cpu_share": wg_cpu / busy if busy else 0.0,
            "ping_p50": r[len(r) // 2], "ping_p99": r[min(len(r) - 1, int(0.99 * len(r)))]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--pings", type=int, default=200)
    a = ap.parse_args()
    labs: dict[str, Cluster] = {}
    rows: dict[str, list[dict[str, float]]] = {v[0]: [] for v in VARIANTS}
    try:
        for name, backend, enc in VARIANTS:
            lab = Cluster(2, backend, encryption=enc)
            labs[name] = lab
            lab.up()
            lab.add_pod(0)
            lab.add_pod(1)
            lab.wait_converged()
        for rnd in range(a.rounds):
            for name, _, _ in VARIANTS:
                m = measure(labs[name], a.seconds, a.pings)
                rows[name].append(m)
                print(f"round {rnd + 1} {name:<18} {m['gbps']:6.2f} Gbit/s  CPU {m['cpu_per_gbit']:5.2f} s/Gbit "
                      f"(wireguard-go {m['wg_cpu_share'] * 100:4.1f} %)  ping p50 {m['ping_p50']:.3f} ms "
                      f"p99 {m['ping_p99']:.3f} ms", flush=True)
    finally:
        for lab in labs.values():
            lab.down()
    print(f"\nmedians over {a.rounds} paired rounds ({a.seconds} s iperf3 each, {a.pings} pings):")
    print(f"  {'variant':<18} {'Gbit/s':>8} {'× host-gw':>10} {'CPU s/Gbit':>11} {'× host-gw':>10} "
          f"{'ping p50 ms':>12} {'× host-gw':>10} {'p99 ms':>8}")
    for name in rows:
        med = {k: statistics.median(r[k] for r in rows[name]) for k in rows[name][0]}
        paired = {k: statistics.median(r[k] / b[k] for r, b in zip(rows[name], rows["host-gw"], strict=True))
                  for k in ("gbps", "cpu_per_gbit", "ping_p50")}
        print(f"  {name:<18} {med['gbps']:8.2f} {paired['gbps']:10.2f} {med['cpu_per_gbit']:11.2f} "
              f"{paired['cpu_per_gbit']:10.2f} {med['ping_p50']:12.3f} {paired['ping_p50']:10.2f} {med['ping_p99']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
