"""One real agent in a simulated N-node cluster (issue 35): what the cluster's size costs a node.

The lab's real kube-apiserver and etcd hold N Node objects — n1, the real node (its own namespace,
a real agent, real pods wired by CNI), and N−1 simulated ones with podCIDRs and the annotations a
podnet agent publishes (underlay addresses on a range that goes nowhere) — and 30 × N Pod objects
bound to them with reported IPs, spread over 10 namespaces, plus NetworkPolicies.  No kubelet or
controller runs for the simulated nodes (the controller manager is off: podCIDRs are set as it
would set them).  Then n1's agent is started fresh and measured:

  start → ready    from exec until the conflist is written, every simulated node's CIDR is routed
                   and the policy table holds the last Pod loaded
  RSS              the agent's, ready and after the events
  kernel state     routes (protocol 151) and nft policy-table elements programmed
  event → kernel   a pod relabelled on a simulated node, E per second for S seconds: from the PATCH
                   until the agent reports (GET /policy/seen) that its kernel holds that version
                   (`event_to_kernel_ms`: when this process's poller saw it), and split by the
                   agent's own times of that event (`split_ms`, CLOCK_MONOTONIC is one clock for
                   every process): sent → arrived off the agent's watch → programmed (the nft
                   commit returned: `sent_to_programmed` is the event → kernel latency itself) →
                   observed by the poller (the measurement's own delay: this process's threads
                   share the machine's two cores with the API server, etcd and the agent)
  watch bytes/s    what the agent read (/proc/PID/io rchar, TLS included) per second meanwhile
  API server       kube-apiserver's and etcd's RSS with everything loaded, and when a plain Pod
                   watch beside the agent's received each change (the API server's share)
  programming      the agent's own histogram of event batch → nft commit during the events

    .venv/bin/python bench/sim_cluster.py --nodes 1000 [--backend vxlan|host-gw] [--pods-per-node 30]
                                          [--policies 200] [--rate 50] [--seconds 20]   (root)

What it does not do (yet): the bgp backend (BIRD learning N routes from a simulated reflector).
K simulated agents against the API server: bench/sim_watchers.py.  Numbers: bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from podnet.agent.config import NodeConfig
from podnet.lab import Cluster
from podnet.lab import relay as lab_relay
from podnet.net.netns import move_this_thread
from podnet.wire import http_get_unix
from policy_bench import APPS, NAMESPACES, policy, rss_mib

AGENT_DEFAULTS = NodeConfig()
SIM_CIDR = ipaddress.ip_network("10.128.0.0/9")      # room for 32 768 nodes' /24s
SIM_UNDERLAY = ipaddress.ip_network("10.100.0.0/16")  # the simulated nodes' addresses (go nowhere)
THREADS = 16


def node_cidr(k: int) -> str:
    return str(ipaddress.ip_network((int(SIM_CIDR.network_address) + 256 * k, 24)))


def node_addr(k: int) -> str:
    return str(SIM_UNDERLAY.network_address + 10 + k)


def sim_mac(k: int) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in k.to_bytes(4, "big"))


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def proc_rss_mib(pattern: str) -> float:
    pids = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    best = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                best = max(best, next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS:")))
        except (OSError, StopIteration):
            continue
    return round(best, 1)


def agent_pid(c: Cluster) -> int:
    pgid = os.getpgid(c.procs["agent0"].pid)
    out = subprocess.run(["pgrep", "-g", str(pgid), "-f", "podnet.cli agent"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def rchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("rchar:"))


class Loader:
    """Many API calls at once from threads inside the fabric (as the admin)."""

    def __init__(self, c: Cluster) -> None:
        self.c, self.admin = c, c.kube.admin
        self.pool = self.new_pool()

    def new_pool(self) -> ThreadPoolExecutor:
        """Threads that call the API server from inside the fabric."""
        return ThreadPoolExecutor(THREADS, thread_name_prefix="lab-api-sim", initializer=move_this_thread,
                                  initargs=(f"/run/netns/{self.c.fab}",))

    def run(self, fn: Any, items: list[Any]) -> float:
        t0 = time.monotonic()
        for _ in self.pool.map(fn, items):
            pass
        return time.monotonic() - t0

    def node(self, k: int, annotations: dict[str, str]) -> None:
        from lightkube.models.core_v1 import NodeAddress, NodeSpec, NodeStatus
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Node
        ann = dict(annotations)
        for key in ann:
            if key.endswith("underlay-addr"):
                ann[key] = node_addr(k)
            elif key.endswith("vtep-mac"):
                ann[key] = sim_mac(k)
        self.admin.create(Node(metadata=ObjectMeta(name=f"sim{k:05d}", annotations=ann,
                                                   labels={"kubernetes.io/hostname": f"sim{k:05d}"}),
                               spec=NodeSpec(podCIDR=node_cidr(k), podCIDRs=[node_cidr(k)]),
                               status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address=node_addr(k))])))

    def pod(self, item: tuple[int, int, dict[str, str]]) -> None:
        from lightkube.models.core_v1 import Container, PodSpec
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Pod
        from lightkube.types import PatchType
        k, j, labels = item
        ns, name = NAMESPACES[(k * 31 + j) % len(NAMESPACES)], f"sim{k:05d}-{j:02d}"
        ip = str(ipaddress.ip_network(node_cidr(k)).network_address + 2 + j)
        self.admin.create(Pod(metadata=ObjectMeta(name=name, namespace=ns, labels=labels),
                              spec=PodSpec(nodeName=f"sim{k:05d}", containers=[Container(name="app", image="none")])))
        self.admin.patch(Pod.Status, name, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
                         namespace=ns, patch_type=PatchType.MERGE)


class Spy:
    """py-spy sampling the agent (not paused: --nonblocking) until stop(); the functions where the
    samples were (self) and under which (inclusive), as shares of all samples."""

    def __init__(self, c: Cluster, out_dir: str, phase: str) -> None:
        os.makedirs(out_dir, exist_ok=True)
        pid = None
        deadline = time.monotonic() + 30
        while pid is None:
            try:
                pid = agent_pid(c)
            except (IndexError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.path = os.path.join(out_dir, f"{phase}.txt")
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        self.proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--nonblocking", "--threads", "--rate", "100",
                                      "--format", "raw", "--output", self.path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def frame(raw: str) -> str:
        """'func (/path/to/mod.py:123)' → 'func (mod.py)': functions, not lines."""
        name, _, loc = raw.partition(" (")
        return f"{name} ({loc.rstrip(')').split('/')[-1].rsplit(':', 1)[0]})"

    def stop(self, top: int = 15) -> dict[str, Any]:
        import signal
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        selfs: dict[str, int] = {}
        incl: dict[str, int] = {}
        total = 0
        with open(self.path) as f:
            for line in f:
                stack, _, n = line.rstrip().rpartition(" ")
                frames = [Spy.frame(fr) for fr in stack.split(";")[1:]]
                if not frames:
                    continue
                k = int(n)
                total += k
                selfs[frames[-1]] = selfs.get(frames[-1], 0) + k
                for fr in set(frames):
                    incl[fr] = incl.get(fr, 0) + k

        def share(d: dict[str, int]) -> list[str]:
            return [f"{v / total:.1%} {f}" for f, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
        return {"samples": total, "self": share(selfs), "inclusive": share(incl)}


def wait(what: str, cond: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - t0


def seen_full(sock: str, obj: str) -> dict[str, Any]:
    """The agent's whole answer (for a recent Pod event also when it arrived and was programmed)."""
    _, body = http_get_unix(sock, "/policy/seen?" + urllib.parse.urlencode({"object": obj}))
    got: dict[str, Any] = json.loads(body)
    return got


def seen(sock: str, obj: str) -> tuple[str | None, bool]:
    doc = seen_full(sock, obj)
    return doc.get("resourceVersion"), bool(doc.get("ready"))


def program_buckets(sock: str, trigger: str = "Pod", metric: str = "podnet_policy_program_seconds"
                    ) -> dict[str, float]:
    """One of the agent's own histograms — by default programming times (event batch → nft commit)
    for `trigger` ("" for a histogram without that label): cumulative count per bucket bound
    (Prometheus text from GET /metrics)."""
    _, body = http_get_unix(sock, "/metrics")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith(metric + "_bucket{") and (not trigger or f'trigger="{trigger}"' in line):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def routing_wakeups(c: Cluster) -> int:
    """The agent's routing passes so far (its metric)."""
    _, body = http_get_unix(c.sock(0), "/metrics")
    text = body.decode()
    return int(float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("podnet_routing_wakeups_total"))))


def count_state(c: Cluster) -> dict[str, int]:
    routes = len(c.podnet_routes(0))
    table = subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "-j", "list", "table", "inet", "podnet_policy"],
                           capture_output=True, text=True).stdout
    objs = json.loads(table)["nftables"] if table else []
    elements = sum(len(o.get("set", o.get("map", {})).get("elem", [])) for o in objs)
    return {"routes": routes, "nft_elements": elements, "nft_rules": sum(1 for o in objs if "rule" in o)}


@contextmanager
def loaded_cluster(n: int, backend: str, per_node: int, n_policies: int, rng: random.Random, out: dict[str, Any]
                   ) -> Iterator[tuple[Cluster, Loader, list[tuple[int, int, dict[str, str]]], list[Any], str]]:
    """The lab with its one real node (agent stopped, 10 real pods) and N−1 simulated nodes, their
    pods and the policies loaded: (cluster, loader, the simulated pods, the real pods, the last
    pod's key).  Loading figures go into `out`."""
    # the agent's own defaults (the DaemonSet's), not the lab's short test timings
    c = Cluster(1, backend, datastore="kubernetes", network_policy=True, controllers=False,
                lease_ttl=AGENT_DEFAULTS.lease_ttl, route_interval=AGENT_DEFAULTS.route_interval)
    c.node_settings[0] = {"cluster-cidr": [str(SIM_CIDR)]}
    try:
        c.up(wait_ready=False)
        from lightkube.resources.core_v1 import Node
        c.kube._in_fabric(c.kube.admin.patch, Node, "n1", {"spec": {"podCIDR": node_cidr(0), "podCIDRs": [node_cidr(0)]}})
        wait("n1's agent ready", lambda: os.path.exists(c.conflist_path(0)), 60)
        if backend == "host-gw":   # the simulated nodes' addresses are on n1's link (they answer nothing)
            subprocess.run(["ip", "netns", "exec", c.nodes[0], "ip", "route", "add", str(SIM_UNDERLAY), "dev", "up0"],
                           check=True)
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import ServiceAccount
        for ns in NAMESPACES:
            c.kube.create_namespace(ns, {"env": rng.choice(["prod", "dev"])})
            # the controller manager is off: no one else makes the namespace's default account
            c.kube._in_fabric(c.kube.admin.create, ServiceAccount(metadata=ObjectMeta(name="default", namespace=ns)))
        local = [c.add_pod(0, {"app": rng.choice(APPS), "tier": "web"}, NAMESPACES[i % len(NAMESPACES)])
                 for i in range(10)]
        published = {k: v for k, v in (c.kube._in_fabric(c.kube.admin.get, Node, "n1").metadata.annotations or {}).items()
                     if k.startswith("podnet.io/")}
        c.kill_agent(0)

        load = Loader(c)
        out["load_nodes_s"] = round(load.run(lambda k: load.node(k, published), list(range(1, n))), 1)
        items = [(k, j, {"app": rng.choice(APPS), "tier": rng.choice(["web", "api", "db"])})
                 for k in range(1, n) for j in range(per_node)]
        out["load_pods_s"] = round(load.run(load.pod, items), 1)
        out["load_pods_per_s"] = round(len(items) / out["load_pods_s"], 0)
        t0 = time.monotonic()
        for k in range(n_policies):
            c.kube.apply_policy(policy(rng, k))
        out["load_policies_s"] = round(time.monotonic() - t0, 1)
        last_k, last_j, _ = items[-1]
        last = f"Pod/{NAMESPACES[(last_k * 31 + last_j) % len(NAMESPACES)]}/sim{last_k:05d}-{last_j:02d}"
        out["apiserver_rss_mib"] = proc_rss_mib("kube-apiserver")
        out["etcd_rss_mib"] = proc_rss_mib("etcd --name")
        yield c, load, items, local, last
    finally:
        c.down()


def simulate(n: int, backend: str, per_node: int, n_policies: int, rate: float, seconds: float, seed: int,
             profile: str = "", poll: float = 0.001, route_intervals: tuple[float, ...] = (),
             via: tuple[str, ...] = ("apiserver",), switch_ms: tuple[float, ...] = ()) -> dict[str, Any]:
    """poll: how often the measuring thread asks the agent's /policy/seen (each ask costs the
    agent an HTTP answer: at 1 ms it was ~12 % of its samples during the events).
    route_intervals: one agent run per value (its --route-interval), one after the other in the
    same loaded cluster (loading 150 000 pods is half of a 5000-node run); the first starts on a
    clean node, the later ones onto what the killed agent left in the kernel, so their start
    figures are a restart's, not a first start's."""
    rng = random.Random(seed)
    out: dict[str, Any] = {"nodes": n, "backend": backend, "pods": n * per_node, "policies": n_policies}
    with loaded_cluster(n, backend, per_node, n_policies, rng, out) as (c, load, items, local, last):
        runs = []
        variants = [(v, ri, sw) for v in via for ri in route_intervals or (AGENT_DEFAULTS.route_interval,)
                    for sw in switch_ms or (0.0,)]
        for k, (path, interval, switch) in enumerate(variants):
            if k:
                c.kill_agent(0)
            if path == "relay" and "relay" not in c.procs:      # started into the loaded cluster
                c.relay = True
                lab_relay.start_in(c, keep_annotations=("bench.podnet.io/",))
                out["relay_ready_s"] = round(c.timings["relay_ready"], 1)
            c.relay = path == "relay"
            c.node_settings[0]["route-interval"] = interval
            # the lease is renewed every ttl/3 and its renewal runs a whole pass: a longer interval
            # needs a longer lease, or the pass still comes every 10 s
            c.node_settings[0]["lease-ttl"] = max(AGENT_DEFAULTS.lease_ttl, int(3 * interval))
            if switch:
                os.environ["PODNET_SWITCH_INTERVAL_MS"] = str(switch)     # the agent inherits it
            else:
                os.environ.pop("PODNET_SWITCH_INTERVAL_MS", None)
            run: dict[str, Any] = {"via": path, "route_interval_s": interval, "restart": bool(k),
                                   "switch_interval_ms": switch or "default"}
            run.update(agent_run(c, load, items, last, n, rng, rate, seconds, profile, poll))
            if path == "relay":
                run["relay_rss_mib"] = proc_rss_mib("podnet.cli relay")
            runs.append(run)
        for p in local:
            c.del_pod(p)
    if len(runs) == 1:
        out.update(runs[0])
    else:
        out["runs"] = runs
    return out


def agent_run(c: Cluster, load: Any, items: list[tuple[int, int, dict[str, str]]], last: str, n: int,
              rng: random.Random, rate: float, seconds: float, profile: str, poll: float) -> dict[str, Any]:
    """One agent started into the loaded cluster: its start, then `rate` pod relabels per second."""
    out: dict[str, Any] = {}
    # ------------------------------------------------ the agent starts into the loaded cluster
    os.unlink(c.conflist_path(0))
    t0 = time.monotonic()
    c.start_agent(0, wait_ready=False)
    spy = Spy(c, profile, "start") if profile else None
    out["start_to_conflist_s"] = round(wait("conflist", lambda: os.path.exists(c.conflist_path(0)), 600), 1)
    wait("routes", lambda: len(c.podnet_routes(0)) >= n - 1, 600)
    out["start_to_routes_s"] = round(time.monotonic() - t0, 1)
    wait("policy", lambda: seen(c.sock(0), last)[0] is not None and seen(c.sock(0), last)[1], 600)
    out["start_to_ready_s"] = round(time.monotonic() - t0, 1)
    if spy is not None:
        out["profile_start"] = spy.stop()
    pid = agent_pid(c)
    out["agent_rss_ready_mib"] = rss_mib(c.procs["agent0"].pid)
    out.update(count_state(c))

    # ------------------------------------------------ events at `rate` per second
    lat: list[float] = []
    split: list[tuple[float, float, float]] = []      # sent → arrived in the agent → programmed → observed
    pending: list[tuple[str, str, float]] = []
    lock, done = threading.Lock(), threading.Event()

    def measure() -> None:
        while not (done.is_set() and not pending):
            with lock:
                head = pending[0] if pending else None
            if head is None:
                time.sleep(poll)
                continue
            obj, version, t_sent = head
            got = seen_full(c.sock(0), obj)
            have = got.get("resourceVersion")
            if have is not None and int(have) >= int(version):
                now = time.monotonic()
                lat.append(now - t_sent)
                if "arrived" in got and have == version:     # the agent's own times of this very event
                    split.append((got["arrived"] - t_sent, got["programmed"] - got["arrived"],
                                  now - got["programmed"]))
                with lock:
                    pending.pop(0)
            else:
                time.sleep(poll)

    def relabel(item: tuple[int, int, dict[str, str]]) -> None:
        from lightkube.resources.core_v1 import Pod
        from lightkube.types import PatchType
        k, j, _ = item
        ns, name = NAMESPACES[(k * 31 + j) % len(NAMESPACES)], f"sim{k:05d}-{j:02d}"
        t_sent = time.monotonic()
        got = load.admin.patch(Pod, name, {"metadata": {"labels": {"app": random.choice(APPS)}}}, namespace=ns,
                               patch_type=PatchType.MERGE)
        with lock:
            pending.append((f"Pod/{ns}/{name}", str(got.metadata.resourceVersion), t_sent))
            sent[(f"Pod/{ns}/{name}", str(got.metadata.resourceVersion))] = t_sent

    # a plain watch of Pods beside the agent's: when the API server delivered each change to a
    # watcher — separates the API server's share of the latency from the agent's
    delivered: dict[tuple[str, str], float] = {}
    stop_watch = threading.Event()

    def watch_delivery() -> None:
        from lightkube.resources.core_v1 import Namespace, Pod
        move_this_thread(f"/run/netns/{c.fab}")
        listing = load.admin.list(Namespace)      # any list's version is etcd's: watch Pods from now
        for _ in listing:
            pass
        rv = str(listing.resourceVersion)
        try:
            for _, obj in load.admin.watch(Pod, namespace="*", resource_version=rv):
                delivered[(f"Pod/{obj.metadata.namespace}/{obj.metadata.name}",
                           str(obj.metadata.resourceVersion))] = time.monotonic()
                if stop_watch.is_set():
                    return
        except Exception:       # the lab went down under the watch after the run
            if not stop_watch.is_set():
                raise

    sent: dict[tuple[str, str], float] = {}
    w = threading.Thread(target=watch_delivery, daemon=True)
    w.start()
    m = threading.Thread(target=measure, daemon=True)
    m.start()
    spy = Spy(c, profile, "events") if profile else None
    wakeups0 = routing_wakeups(c)
    buckets0 = program_buckets(c.sock(0))
    waits0 = program_buckets(c.sock(0), metric="podnet_policy_pod_event_seconds", trigger="")
    io0, t0 = rchar(pid), time.monotonic()
    events = int(rate * seconds)
    pool = load.new_pool()      # its end is the events' end
    for i in range(events):
        at = t0 + i / rate
        time.sleep(max(0.0, at - time.monotonic()))
        pool.submit(relabel, rng.choice(items))
    pool.shutdown(wait=True)
    done.set()
    m.join(120)
    elapsed = time.monotonic() - t0
    out["events"] = len(lat)
    out["event_to_kernel_ms"] = {"p50": round(statistics.median(lat) * 1000, 1),
                                 "p99": round(pct(lat, 0.99) * 1000, 1), "max": round(max(lat) * 1000, 1)}
    if split:
        out["split_ms"] = {"events": len(split), **{
            part: {"p50": round(statistics.median(xs) * 1000, 1), "p99": round(pct(xs, 0.99) * 1000, 1),
                   "max": round(max(xs) * 1000, 1)}
            for part, xs in (("sent_to_arrived", [a for a, _, _ in split]),
                             ("arrived_to_programmed", [b for _, b, _ in split]),
                             ("sent_to_programmed", [a + b for a, b, _ in split]),
                             ("programmed_to_observed", [c for _, _, c in split]))}}
    stop_watch.set()
    buckets1 = program_buckets(c.sock(0))
    total = buckets1.get("+Inf", 0) - buckets0.get("+Inf", 0)
    out["program_batches"] = int(total)
    out["program_batches_over_s"] = {le: int(total - (n - buckets0.get(le, 0))) for le, n in buckets1.items()
                                     if le in ("0.1", "0.25", "0.5", "1.0")}
    waits1 = program_buckets(c.sock(0), metric="podnet_policy_pod_event_seconds", trigger="")
    total = waits1.get("+Inf", 0) - waits0.get("+Inf", 0)
    out["agent_pod_events"] = int(total)
    out["agent_pod_event_over_s"] = {le: int(total - (n - waits0.get(le, 0))) for le, n in waits1.items()
                                     if le in ("0.1", "0.25", "0.5", "1.0")}
    api = [delivered[k] - t for k, t in sent.items() if k in delivered]
    if api:
        out["api_delivery_ms"] = {"events": len(api), "p50": round(statistics.median(api) * 1000, 1),
                                  "p99": round(pct(api, 0.99) * 1000, 1), "max": round(max(api) * 1000, 1)}
    if spy is not None:
        out["profile_events"] = spy.stop()
    out["routing_passes_during_events"] = routing_wakeups(c) - wakeups0
    out["agent_read_kib_per_s"] = round((rchar(pid) - io0) / elapsed / 1024, 1)
    out["agent_rss_after_events_mib"] = rss_mib(c.procs["agent0"].pid)
    return out


def main() -> int:
    # SIGTERM (a timeout, a kill) unwinds like an error: the lab is taken down, not left running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--backend", choices=("vxlan", "host-gw"), default="vxlan")
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--poll-ms", type=float, default=1.0,
                    help="how often /policy/seen is asked (ms): the latency's resolution, and its cost to the agent")
    ap.add_argument("--profile", default="", metavar="DIR",
                    help="sample the agent with py-spy (pip install py-spy) from start to ready and during the "
                         "events; raw stacks in DIR, the top functions in the output")
    ap.add_argument("--via", default="apiserver", metavar="apiserver|relay[,…]",
                    help="where the agent lists and watches: the API server, or a podnet relay started into the "
                         "loaded cluster; several: one agent run each")
    ap.add_argument("--switch-interval-ms", default="", metavar="MS[,MS…]",
                    help="the agent's interpreter switch interval (PODNET_SWITCH_INTERVAL_MS); several: one agent "
                         "run each (with every --route-interval)")
    ap.add_argument("--route-interval", default="", metavar="S[,S…]",
                    help="the agent's --route-interval (default: its own; its lease-ttl becomes 3× it, so no "
                         "renewal runs a pass in between); several: one agent run for each, one after the other "
                         "in the same loaded cluster")
    a = ap.parse_args()
    intervals = tuple(float(x) for x in a.route_interval.split(",") if x)
    print(json.dumps(simulate(a.nodes, a.backend, a.pods_per_node, a.policies, a.rate, a.seconds, a.seed,
                              a.profile, a.poll_ms / 1000, intervals, tuple(a.via.split(",")),
                              tuple(float(x) for x in a.switch_interval_ms.split(",") if x)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
