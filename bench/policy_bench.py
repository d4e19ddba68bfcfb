"""NetworkPolicy at scale: 1000 pods and 200 policies on one node's agent.

Part 1, the agent through the real API (a one-node lab with the real control plane; the 1000 pods
are Pod objects bound to the node with reported IPs, no netns — the control plane's part):
  policy change  one policy's spec updated → time from the API's answer until the agent reports
                 (GET /policy/seen) that its kernel holds that resourceVersion
  pod churn      a pod relabelled (moving between selectors), a pod created and its IP reported, a
                 pod deleted → the same
  memory         the agent's RSS with everything loaded
Part 2, the engine alone (in-process, real nftables in a namespace of its own): the full table's
transaction and each kind of event's transaction, without the API in the way.

    .venv/bin/python bench/policy_bench.py [--pods 1000] [--policies 200] [--cluster-policies 50]
                                           [--changes 100]   (root)

With --cluster-policies N (issue 33): N ClusterNetworkPolicies too (Admin and Baseline tiers,
realistic shapes: protect a namespace, pass a team's traffic to its own policies, a baseline deny),
and a ClusterNetworkPolicy change (one policy's rules and priority rewritten) timed the same way.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from podnet.lab import Cluster
from podnet.wire import http_get_unix

NAMESPACES = [f"team{i}" for i in range(10)]
APPS = [f"app{i}" for i in range(20)]


def pod_ip(k: int) -> str:
    return str(ipaddress.ip_address("10.250.0.0") + 10 + k)


def pod_labels(rng: random.Random) -> dict[str, str]:
    return {"app": rng.choice(APPS), "tier": rng.choice(["web", "api", "db"])}


def policy(rng: random.Random, k: int, port: int | None = None) -> dict[str, Any]:
    """Realistic shapes: allow an app from some apps (same namespace), from a labelled namespace,
    from an ipBlock, on a port or two; now and then egress too."""
    ns = NAMESPACES[k % len(NAMESPACES)]
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}]
    if rng.random() < 0.5:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rng.choice(NAMESPACES)}},
                      "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}})
    if rng.random() < 0.2:
        peers.append({"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}})
    spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": rng.choice(APPS)}},
                            "ingress": [{"from": peers, "ports": [{"port": port or rng.choice([80, 443, 8080])},
                                                                  {"port": "http", "protocol": "TCP"}]}],
                            "policyTypes": ["Ingress"]}
    if rng.random() < 0.3:
        spec["egress"] = [{"to": [{"podSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}]
        spec["policyTypes"] = ["Ingress", "Egress"]
    return {"metadata": {"namespace": ns, "name": f"pol{k:03d}"}, "spec": spec}


def cluster_policy(rng: random.Random, k: int, port: int | None = None) -> dict[str, Any]:
    """Admin: deny a namespace's ingress from others but a few, or pass a team's traffic to its own
    NetworkPolicies; Baseline: deny ingress from other namespaces."""
    ns = NAMESPACES[k % len(NAMESPACES)]
    subject = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns}}} if rng.random() < 0.6 else \
        {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                  "podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}}
    tier = "Baseline" if k % 5 == 4 else "Admin"
    rules: list[dict[str, Any]] = []
    if tier == "Admin":
        rules.append({"action": "Pass", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                                rng.choice(NAMESPACES)}}}]})
        rules.append({"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {
            "matchLabels": {"app": rng.choice(APPS)}}}}],
            "protocols": [{"tcp": {"destinationPort": {"number": port or rng.choice([80, 443, 8080])}}}]})
    rules.append({"action": "Deny", "from": [{"namespaces": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns]}]}}]})
    egress = [{"action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]}] if rng.random() < 0.3 else None
    spec: dict[str, Any] = {"tier": tier, "priority": (k * 7) % 1000, "subject": subject, "ingress": rules}
    if egress:
        spec["egress"] = egress
    return {"metadata": {"name": f"cnp{k:03d}"}, "spec": spec}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50_ms": round(pct(xs, 0.5) * 1000, 1), "p90_ms": round(pct(xs, 0.9) * 1000, 1),
            "p99_ms": round(pct(xs, 0.99) * 1000, 1), "max_ms": round(max(xs) * 1000, 1)}


class Seen:
    def __init__(self, sock: str) -> None:
        self.sock = sock

    def version(self, obj: str) -> str | None:
        _, body = http_get_unix(self.sock, "/policy/seen?" + urllib.parse.urlencode({"object": obj}))
        v = json.loads(body).get("resourceVersion")
        return None if v is None else str(v)

    def wait(self, obj: str, version: str | None, t0: float, timeout: float = 30) -> float:
        while True:
            have = self.version(obj)
            if (version is None and have is None) or (version is not None and have is not None
                                                        and int(have) >= int(version)):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{obj} not programmed at {version} (have {have})")
            time.sleep(0.001)


def rss_mib(pid: int) -> float:
    """The agent's RSS: the python process under `ip netns exec` (the lab's process group)."""
    out = subprocess.run(["pgrep", "-g", str(os.getpgid(pid)), "-f", "podnet.cli agent"], capture_output=True,
                         text=True).stdout.split()
    best = 0.0
    for p in out:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return round(best, 1)


def through_the_api(n_pods: int, n_policies: int, changes: int, seed: int, n_cnps: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    c = Cluster(1, "vxlan", datastore="kubernetes", network_policy=True)
    try:
        c.up()
        kube, seen = c.kube, Seen(c.sock(0))
        ports = (("http", "TCP", 8080),)
        out["rss_empty_mib"] = rss_mib(c.procs["agent0"].pid)
        for ns in NAMESPACES:
            kube.create_namespace(ns, {"env": rng.choice(["prod", "dev"])})
        t0 = time.monotonic()
        names = []
        for k in range(n_pods):
            ns, name = NAMESPACES[k % len(NAMESPACES)], f"pod{k:04d}"
            kube.create_pod(name, "n1", pod_labels(rng), ns, ports)
            kube.report_pod_ips(name, "n1", [pod_ip(k)], ns)
            names.append((ns, name))
        seen.wait(f"Pod/{names[-1][0]}/{names[-1][1]}", kube.pod_version(names[-1][1], names[-1][0]), t0, 120)
        out["load_pods_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        for k in range(n_policies):
            v = kube.apply_policy(policy(rng, k))
        seen.wait(f"NetworkPolicy/{NAMESPACES[(n_policies - 1) % len(NAMESPACES)]}/pol{n_policies - 1:03d}", v, t0, 120)
        out["load_policies_s"] = round(time.monotonic() - t0, 1)
        if n_cnps:
            kube.apply_crds()
            t0 = time.monotonic()
            for k in range(n_cnps):
                v = kube.apply_cluster_policy(cluster_policy(rng, k))
            seen.wait(f"ClusterNetworkPolicy//cnp{n_cnps - 1:03d}", v, t0, 120)
            out["load_cluster_policies_s"] = round(time.monotonic() - t0, 1)
        table = subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "-j", "list", "table", "inet", "podnet_policy"],
                               capture_output=True, text=True, check=True).stdout
        objs = json.loads(table)["nftables"]
        out["table"] = {"sets": sum(1 for o in objs if "set" in o), "chains": sum(1 for o in objs if "chain" in o),
                        "rules": sum(1 for o in objs if "rule" in o),
                        "elements": sum(len(o.get("set", o.get("map", {})).get("elem", [])) for o in objs)}
        out["rss_loaded_mib"] = rss_mib(c.procs["agent0"].pid)

        lat: dict[str, list[float]] = {"policy_change": [], "pod_relabel": [], "pod_create": [], "pod_delete": []}
        if n_cnps:
            lat["cluster_policy_change"] = []
        for i in range(changes):
            if n_cnps:
                c_new = cluster_policy(random.Random(seed * 2000 + i), rng.randrange(n_cnps), port=2000 + i)
                t0 = time.monotonic()
                v = kube.apply_cluster_policy(c_new)
                lat["cluster_policy_change"].append(seen.wait(f"ClusterNetworkPolicy//{c_new['metadata']['name']}",
                                                              v, t0))
            k = rng.randrange(n_policies)
            p = policy(random.Random(seed * 1000 + i), k, port=1000 + i)
            t0 = time.monotonic()
            v = kube.apply_policy(p)
            lat["policy_change"].append(seen.wait(f"NetworkPolicy/{p['metadata']['namespace']}/{p['metadata']['name']}",
                                                  v, t0))
            ns, name = rng.choice(names)
            t0 = time.monotonic()
            v = kube.label_pod(name, ns, pod_labels(rng))
            lat["pod_relabel"].append(seen.wait(f"Pod/{ns}/{name}", v, t0))
            ns, name = NAMESPACES[i % len(NAMESPACES)], f"churn{i:04d}"
            t0 = time.monotonic()
            kube.create_pod(name, "n1", pod_labels(rng), ns, ports)
            kube.report_pod_ips(name, "n1", [pod_ip(n_pods + i)], ns)
            lat["pod_create"].append(seen.wait(f"Pod/{ns}/{name}", kube.pod_version(name, ns), t0))
            t0 = time.monotonic()
            kube.delete_pod(name, ns)
            lat["pod_delete"].append(seen.wait(f"Pod/{ns}/{name}", None, t0))
        out["latency_api_to_kernel"] = {k: summary(v) for k, v in lat.items()}
        out["rss_after_changes_mib"] = rss_mib(c.procs["agent0"].pid)
    finally:
        c.down()
    return out


def engine_alone(n_pods: int, n_policies: int, changes: int, seed: int, n_cnps: int = 0) -> dict[str, Any]:
    """The engine in this process (run inside a netns of its own, see main), real nftables;
    per-event transaction times."""
    import tempfile

    from podnet.agent.policy.engine import PolicyEngine
    rng = random.Random(seed)
    e = PolicyEngine("n1", tempfile.mkdtemp(prefix="pnbench-"))
    pods = {}
    for k in range(n_pods):
        nsn, name = NAMESPACES[k % len(NAMESPACES)], f"pod{k:04d}"
        pods[f"{nsn}/{name}"] = {"metadata": {"namespace": nsn, "name": name, "labels": pod_labels(rng),
                                              "resourceVersion": "1"},
                                 "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                                     {"name": "http", "protocol": "TCP", "containerPort": 8080}]}]},
                                 "status": {"podIP": pod_ip(k), "podIPs": [{"ip": pod_ip(k)}]}}
    pols = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in (policy(rng, k) for k in range(n_policies))}
    cnps = {f"cnp{k:03d}": cluster_policy(rng, k) for k in range(n_cnps)}
    t0 = time.perf_counter()
    e.set_all(pods=pods, namespaces={n: {"kubernetes.io/metadata.name": n} for n in NAMESPACES}, policies=pols,
              cluster_policies=cnps)
    full = time.perf_counter() - t0
    lat: dict[str, list[float]] = {"policy_change": [], "pod_relabel": [], "pod_add": [], "pod_delete": []}
    if n_cnps:
        lat["cluster_policy_change"] = []
    for i in range(changes):
        if n_cnps:
            c_new = cluster_policy(random.Random(seed * 2000 + i), rng.randrange(n_cnps), port=2000 + i)
            t0 = time.perf_counter()
            e.cluster_policy_event("MODIFIED", c_new)
            lat["cluster_policy_change"].append(time.perf_counter() - t0)
        k = rng.randrange(n_policies)
        t0 = time.perf_counter()
        e.policy_event("MODIFIED", policy(random.Random(seed * 1000 + i), k, port=1000 + i))
        lat["policy_change"].append(time.perf_counter() - t0)
        key = rng.choice(list(pods))
        obj = json.loads(json.dumps(pods[key]))
        obj["metadata"]["labels"] = pod_labels(rng)
        t0 = time.perf_counter()
        e.pod_event("MODIFIED", obj)
        lat["pod_relabel"].append(time.perf_counter() - t0)
        new = json.loads(json.dumps(pods[key]))
        new["metadata"]["name"] = f"churn{i}"
        new["status"] = {"podIP": pod_ip(n_pods + i), "podIPs": [{"ip": pod_ip(n_pods + i)}]}
        t0 = time.perf_counter()
        e.pod_event("ADDED", new)
        lat["pod_add"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        e.pod_event("DELETED", new)
        lat["pod_delete"].append(time.perf_counter() - t0)
    return {"full_table_s": round(full, 2), "counts": e.programmed.counts(),
            "latency_event_to_commit": {k: summary(v) for k, v in lat.items()}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--cluster-policies", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--part", choices=("api", "engine", "both", "engine-inside"), default="both")
    a = ap.parse_args()
    result: dict[str, Any] = {"pods": a.pods, "policies": a.policies, "cluster_policies": a.cluster_policies,
                              "changes": a.changes}
    if a.part in ("api", "both"):
        result["api"] = through_the_api(a.pods, a.policies, a.changes, a.seed, a.cluster_policies)
        print(json.dumps(result["api"], indent=1), flush=True)
    if a.part == "engine-inside":        # run by the "engine" part inside its own netns
        print(json.dumps(engine_alone(a.pods, a.policies, a.changes, a.seed, a.cluster_policies)))
        return 0
    if a.part in ("engine", "both"):
        ns = f"pnbench-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--part", "engine-inside",
                                   "--pods", str(a.pods), "--policies", str(a.policies), "--changes", str(a.changes),
                                   "--seed", str(a.seed), "--cluster-policies", str(a.cluster_policies)],
                                  capture_output=True, text=True, check=True)
            result["engine"] = json.loads(proc.stdout)
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
