"""Profile the agent-side work of ADD/DEL (no launcher, no HTTP): where do the milliseconds go?

Usage (root): .venv/bin/python bench/profile_add.py [--conf CONF] [--runtime-config JSON|@FILE] [--pods N]
A conflist is profiled through its first plugin (the one-exec `podnet` plugin's whole path), with
runtimeConfig injected for the capabilities it declares, as libcni does.
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
    ap.add_argument("--runtime-config", default="",
                    help="runtimeConfig JSON or @FILE (@PORT@ becomes a per-pod port), as cnibench takes it")
    ap.add_argument("--breakdown", action="store_true",
                    help="wall time per category (step, IPAM, nft, sysctl, netlink) instead of cProfile")
    ap.add_argument("--growth", action="store_true",
                    help="with --breakdown: the first and the last tenth of the ADDs side by side")
    ap.add_argument("--host-setup", action="append", default=[], metavar="CMD",
                    help="a command run in the scratch netns first (as cnibench's), e.g. an uplink for macvlan: "
                         "'ip link add mvmaster0 type veth peer name mvpeer0' (repeatable)")
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
        for cmd in a.host_setup:
            subprocess.run(["ip", "netns", "exec", tag, "sh", "-c", cmd], check=True)
        # the whole process runs inside the scratch netns: nothing can land in the host's
        return subprocess.run(["ip", "netns", "exec", tag, sys.executable, *sys.argv, "--inner", tag]).returncode
    finally:
        for p in pods:
            subprocess.run(["ip", "netns", "del", p], capture_output=True)
        subprocess.run(["ip", "netns", "del", tag], capture_output=True)


class Breakdown:
    """Wall time per category of the agent-side work: each step of the one-exec plugin, and inside
    the steps IPAM, nft transactions, sysctl writes and netlink round trips (pyroute2's request).
    Categories nest (a step contains the rest), so the step rows add up to the total."""

    def __init__(self) -> None:
        self.on = False
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.inside: set[str] = set()
        self.window = ""        # with --growth: "first" | "last", prefixed to every label
        from pyroute2 import IPRoute

        from podnet.net import nft, sysctl
        from podnet.net.nlraw import RawRtnl
        from podnet.plugins import delegate, pod
        self._wrap(delegate, "_call", "IPAM (delegate)")
        self._wrap(nft, "run", "nft transaction")
        self._wrap(sysctl, "ensure", "sysctl write")
        # pyroute2 0.9's sync IPRoute runs every request through one of these (its __getattr__)
        for attr in ("_run_generic_rtnl", "_run_force_sync", "_generate_with_cleanup"):
            self._wrap(IPRoute, attr, "netlink request")
        self._wrap(RawRtnl, "request", "netlink request")     # single-answer requests (net/nlraw.py)
        for name, plugin in {**pod.MODES, **{k: v[0] for k, v in pod.SECTIONS.items()}}.items():
            for op in ("add", "delete"):
                self._wrap_plugin(plugin, op, f"step {name}")

    def _timed(self, label: str, fn):  # type: ignore[no-untyped-def]
        def timed(*args, **kw):  # type: ignore[no-untyped-def]
            if not self.on or label in self.inside:   # a wrapped call inside itself counts once
                return fn(*args, **kw)
            self.inside.add(label)
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                if os.environ.get("PROFILE_TRACE"):   # every call, with its wall time
                    print(f"{1000 * (time.perf_counter() - t):6.2f} ms  {label}",
                          [getattr(x, "__name__", x) for x in args[1:3]], sorted(kw)[:4],
                          kw.get("ifname", kw.get("index", "")), file=sys.stderr)
                self.inside.discard(label)
                key = f"{self.window}:{label}" if self.window else label
                self.spent[key] = self.spent.get(key, 0.0) + time.perf_counter() - t
                self.calls[key] = self.calls.get(key, 0) + 1
        return timed

    def _wrap(self, owner: object, attr: str, label: str) -> None:
        setattr(owner, attr, self._timed(label, getattr(owner, attr)))

    def _wrap_plugin(self, plugin: object, op: str, label: str) -> None:
        object.__setattr__(plugin, op, self._timed(label, getattr(plugin, op)))

    def enable(self) -> None:
        self.on = True

    def disable(self) -> None:
        self.on = False

    def report_growth(self, pods: int) -> None:
        labels = sorted({k.split(":", 1)[1] for k in self.spent}, key=lambda k: -self.spent.get(f"last:{k}", 0))
        print(f"{'category':24} {'first ms':>9} {'last ms':>9} {'growth':>7}   (per pod, the first and last {pods})")
        for label in labels:
            f, la = (1000 * self.spent.get(f"{w}:{label}", 0.0) / pods for w in ("first", "last"))
            print(f"{label:24} {f:9.2f} {la:9.2f} {la / f if f else 0:7.2f}")

    def report(self, pods: int) -> None:
        print(f"{'category':24} {'ms/pod':>8} {'calls/pod':>10}")
        for label in sorted(self.spent, key=lambda k: -self.spent[k]):
            print(f"{label:24} {1000 * self.spent[label] / pods:8.2f} {self.calls[label] / pods:10.1f}")


def profile(a: argparse.Namespace) -> int:
    tag = a.inner
    if os.stat("/proc/self/ns/net").st_ino != os.stat(f"/run/netns/{tag}").st_ino:
        raise SystemExit(f"refusing to run outside the scratch netns {tag}")
    pods = [f"{tag}p{i}" for i in range(a.pods)]
    data = tempfile.mkdtemp()
    try:
        from podnet import dispatch
        conf = json.load(open(a.conf))
        if "plugins" in conf:   # a conflist: its first plugin, with the list's name and version
            conf = {"cniVersion": conf["cniVersion"], "name": conf["name"], **conf["plugins"][0]}
        conf["ipam"]["dataDir"] = data
        if not conf["ipam"]["type"].startswith("podnet-"):
            conf["ipam"]["type"] = "podnet-" + conf["ipam"]["type"]  # as cnibench --type-prefix does
        ptype = conf["type"]  # the registry key: podnet-bridge runs as "bridge"
        rc_text = a.runtime_config
        if rc_text.startswith("@"):
            rc_text = open(rc_text[1:]).read()
        caps = [k for k, on in conf.pop("capabilities", {}).items() if on]

        def stdin_for(i: int) -> bytes:
            c = dict(conf)
            if rc_text:
                rc = json.loads(rc_text.replace("@PORT@", str(20000 + i)))
                picked = {k: v for k, v in rc.items() if k in caps}
                if picked:
                    c["runtimeConfig"] = picked
            return json.dumps(c).encode()

        def env(cmd: str, i: int) -> dict[str, str]:
            return {"CNI_COMMAND": cmd, "CNI_CONTAINERID": f"c{i}", "CNI_NETNS": f"/run/netns/{pods[i]}",
                    "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
        out = dispatch.handle(ptype, env("ADD", 0), stdin_for(0))  # warm
        assert out.exit_code == 0, out.stdout
        prof: cProfile.Profile | Breakdown = Breakdown() if a.breakdown else cProfile.Profile()
        t0 = time.perf_counter()
        if a.phase == "add":
            prof.enable()
        tenth = max(1, a.pods // 10)
        for i in range(1, a.pods):
            if a.growth and isinstance(prof, Breakdown):   # the first and the last tenth, apart
                prof.window = "first" if i <= tenth else "last" if i >= a.pods - tenth else ""
                prof.on = prof.window != ""
            out = dispatch.handle(ptype, env("ADD", i), stdin_for(i))
            assert out.exit_code == 0, out.stdout
        prof.disable()
        t1 = time.perf_counter()
        if a.phase == "del":
            prof.enable()
        for i in range(a.pods):
            dispatch.handle(ptype, env("DEL", i), stdin_for(i))
        prof.disable()
        t2 = time.perf_counter()
        n = a.pods - 1
        print(f"ADD {1000 * (t1 - t0) / n:.2f} ms/pod, DEL {1000 * (t2 - t1) / a.pods:.2f} ms/pod "
              f"({a.phase} profiled)", file=sys.stderr)
        if isinstance(prof, Breakdown) and a.growth:
            prof.report_growth(tenth)
        elif isinstance(prof, Breakdown):
            prof.report(n if a.phase == "add" else a.pods)
        else:
            stats = pstats.Stats(prof).sort_stats(a.sort)
            stats.print_stats(a.top)
            if os.environ.get("PROFILE_CALLERS"):        # who calls the named function(s)
                stats.print_callers(os.environ["PROFILE_CALLERS"])
    finally:
        subprocess.run(["rm", "-rf", data])
    return 0


if __name__ == "__main__":
    sys.exit(main())
