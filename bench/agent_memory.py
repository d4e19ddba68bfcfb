"""Where an agent's memory goes in a big cluster (issue 35): the policy side of one agent, in this
process, holding the Pods of a simulated cluster as the agent does — the Pod informer's cache (what
`pod_info` keeps of each Pod, decoded from the API's JSON by the same client library) and
the engine with its whole table programmed in real nftables (in a namespace of its own).

RSS after each step, and (--trace) the allocation sites holding the most at the end (tracemalloc;
slower).  The pods are sim_cluster.py's: 30 per node over 10 namespaces, labels app/tier, 200
NetworkPolicies.

    .venv/bin/python bench/agent_memory.py --pods 150000 [--trace]      (root)
"""
from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from policy_bench import APPS, NAMESPACES, policy
from sim_cluster import node_cidr


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")) / 1024


def api_pod(k: int, j: int, rng: random.Random) -> dict[str, Any]:
    """A Pod as the API server serves it for sim_cluster's objects (defaults, the service account
    volume and two managedFields entries included: what the client decodes)."""
    ns, name = NAMESPACES[(k * 31 + j) % len(NAMESPACES)], f"sim{k:05d}-{j:02d}"
    ip = str(ipaddress.ip_network(node_cidr(k)).network_address + 2 + j)
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"0c6f{k:08x}-{j:04x}-4e1a-9d7b-5f0e3c2a1b9d",
                     "resourceVersion": str(100000 + k * 30 + j), "creationTimestamp": "2026-12-07T20:00:00Z",
                     "labels": {"app": rng.choice(APPS), "tier": rng.choice(["web", "api", "db"])},
                     "managedFields": [
                         {"manager": "sim", "operation": "Update", "apiVersion": "v1", "time": "2026-12-07T20:00:00Z",
                          "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {},
                                                                                             "f:tier": {}}},
                                                                 "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                                                                     ".": {}, "f:image": {}, "f:name": {}}}}}},
                         {"manager": "sim", "operation": "Update", "apiVersion": "v1", "time": "2026-12-07T20:00:00Z",
                          "fieldsType": "FieldsV1", "subresource": "status",
                          "fieldsV1": {"f:status": {"f:phase": {}, "f:podIP": {}, "f:podIPs": {}}}}]},
        "spec": {"volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                     {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                     {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                                   "fieldPath": "metadata.namespace"}}]}}],
                     "defaultMode": 420}}],
                 "containers": [{"name": "app", "image": "none", "resources": {},
                                 "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": True,
                                                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                                 "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "serviceAccount": "default", "nodeName": f"sim{k:05d}",
                 "securityContext": {}, "schedulerName": "default-scheduler",
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 300},
                                 {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}],
                 "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "BestEffort"}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=150000)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.inside:
        ns = f"pnbench-mem-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            return subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inside", "--pods",
                                   str(a.pods), "--policies", str(a.policies)] + (["--trace"] if a.trace else [])
                                  ).returncode
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    import msgspec
    from lightkube.core import decoders
    from lightkube.resources.core_v1 import Pod

    from podnet.agent.kubewatch import key_of
    from podnet.agent.policy.engine import PolicyEngine
    from podnet.agent.policy.watch import pod_info
    if a.trace:
        import tracemalloc
        tracemalloc.start(3)
    out: dict[str, Any] = {"pods": a.pods, "policies": a.policies, "rss_mib": {"start": round(rss_mib(), 1)}}
    rng = random.Random(1)
    per_node = 30
    items = [(1 + i // per_node, i % per_node) for i in range(a.pods)]
    cache: dict[str, Any] = {}
    t0 = time.perf_counter()
    decode_s = 0.0
    for first in range(0, len(items), 500):       # the informer's pages of 500, decoded as the client does
        page = msgspec.json.encode({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                    "items": [api_pod(k, j, rng) for k, j in items[first:first + 500]]})
        d0 = time.perf_counter()
        _, _, objs = decoders.decode_list(page, Pod)
        for o in objs:
            cache[key_of(o)] = pod_info(o)
        decode_s += time.perf_counter() - d0
        del page, objs
    gc.collect()
    out["list_decode_keep_s"] = round(decode_s, 1)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["rss_mib"]["informer_cache"] = round(rss_mib(), 1)
    e = PolicyEngine("n1", tempfile.mkdtemp(prefix="pnbench-"))
    pols = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in (policy(rng, k) for k in range(a.policies))}
    t0 = time.perf_counter()
    e.set_all(pods=dict(cache), namespaces={n: {"kubernetes.io/metadata.name": n} for n in NAMESPACES},
              policies=pols, cluster_policies={})
    out["full_table_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    gc.collect()
    out["full_gc_pause_s"] = round(time.perf_counter() - t0, 2)   # what a generation-2 collection costs now
    out["gc_tracked_objects"] = len(gc.get_objects())
    out["rss_mib"]["engine_programmed"] = round(rss_mib(), 1)
    out["counts"] = e.programmed.counts()
    if a.trace:
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("lineno")
        out["top_allocations"] = [f"{s.size / 2**20:.1f} MiB {s.count} blocks "
                                  f"{s.traceback[0].filename.split('/')[-1]}:{s.traceback[0].lineno}"
                                  for s in stats[:20]]
        out["traced_mib"] = round(sum(s.size for s in stats) / 2**20, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
