"""Profile the agent-side work of ADD/DEL (no launcher, no HTTP): where do the milliseconds go?

Usage (root): .venv/bin/python bench/profile_add.py [--conf CONF] [--pods N] [--prefix podnet-]
Runs inside a scratch netns standing in for the host; removes everything on the way out.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time

# the shared benchmark kit lives beside the project's checkout: ../shared/bench
SHARED_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", default=os.path.join(SHARED_BENCH, "configs", "bridge-nomasq.conf"),
                    help="a CNI config (default: the shared bench's bridge-nomasq.conf, beside the checkout)")
    ap.add_argument("--pods", type=int, default=40)
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--sort", default="cumulative")
    ap.add_argument("--phase", choices=("add", "del"), default="add")
    ap.add_argument("--inner", default="", help=argparse.SUPPRESS)  # set when re-run inside the scratch netns
    a = ap.parse_args()
    if a.inner:
        return profile(a)
    tag = f"pnprof{os.getpid()}"
    subprocess.run(["ip", "netns", "add", tag], check=True)
    pods = [f"{tag}p{i}" for i in range(a.pods)]
    try:
        for p in pods:
            subprocess.run(["ip", "netns", "add", p], check=True)
        # the whole process runs inside the scratch netns: nothing can land in the host's
        return subprocess.run(["ip", "netns", "exec", tag, sys.executable, *sys.argv, "--inner", tag]).returncode
    finally:
        for p in pods:
            subprocess.run(["ip", "netns", "del", p], capture_output=True)
        subprocess.run(["ip", "netns", "del", tag], capture_output=True)


def profile(a: argparse.Namespace) -> int:
    tag = a.inner
    if os.stat("/proc/self/ns/net").st_ino != os.stat(f"/run/netns/{tag}").st_ino:
        raise SystemExit(f"refusing to run outside the scratch netns {tag}")
    pods = [f"{tag}p{i}" for i in range(a.pods)]
    data = tempfile.mkdtemp()
    try:
        from podnet import dispatch
        conf = json.load(open(a.conf))
        conf["ipam"]["dataDir"] = data
        conf["ipam"]["type"] = "podnet-" + conf["ipam"]["type"]  # as cnibench --type-prefix does
        ptype = conf["type"]  # the registry key: podnet-bridge runs as "bridge"
        stdin = json.dumps(conf).encode()

        def env(cmd: str, i: int) -> dict[str, str]:
            return {"CNI_COMMAND": cmd, "CNI_CONTAINERID": f"c{i}", "CNI_NETNS": f"/run/netns/{pods[i]}",
                    "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
        out = dispatch.handle(ptype, env("ADD", 0), stdin)  # warm
        assert out.exit_code == 0, out.stdout
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        if a.phase == "add":
            prof.enable()
        for i in range(1, a.pods):
            out = dispatch.handle(ptype, env("ADD", i), stdin)
            assert out.exit_code == 0, out.stdout
        prof.disable()
        t1 = time.perf_counter()
        if a.phase == "del":
            prof.enable()
        for i in range(a.pods):
            dispatch.handle(ptype, env("DEL", i), stdin)
        prof.disable()
        t2 = time.perf_counter()
        n = a.pods - 1
        print(f"ADD {1000 * (t1 - t0) / n:.2f} ms/pod, DEL {1000 * (t2 - t1) / a.pods:.2f} ms/pod "
              f"({a.phase} profiled)", file=sys.stderr)
        pstats.Stats(prof).sort_stats(a.sort).print_stats(a.top)
    finally:
        subprocess.run(["rm", "-rf", data])
    return 0


if __name__ == "__main__":
    sys.exit(main())
