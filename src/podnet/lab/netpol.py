"""The NetworkPolicy world of Kubernetes' e2e suite on a lab cluster: namespaces x, y, z with pods
a, b, c in each (labels pod=<name>; named container ports serve-80-tcp, serve-81-tcp, serve-80-udp,
serve-81-udp; servers on 80 and 81, TCP and UDP) spread round robin over the nodes, so the matrix
has same-node and cross-node pairs.

Every change goes through the API server as a user makes it, and the driver waits — never sleeps
— until every node's agent reports (GET /policy/seen) that the table in its kernel reflects that
object's resourceVersion; then the matrix is probed for real (lab/probe.py).  What the matrix
should be is not this module's business: callers compare with a reference model.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from typing import Any

from ..wire import http_get_unix
from .cluster import Cluster, Pod
from .probe import PodServers, Target, probe

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (("serve-80-tcp", "TCP", 80), ("serve-81-tcp", "TCP", 81), ("serve-80-udp", "UDP", 80),
         ("serve-81-udp", "UDP", 81))
NS_LABEL = "kubernetes.io/metadata.name"


class NotProgrammed(RuntimeError):
    """An agent did not program a change in time."""


class PolicyLab:
    def __init__(self, cluster: Cluster, program_timeout: float = 20.0) -> None:
        self.c = cluster
        self.kube = cluster.kube
        self.program_timeout = program_timeout
        self.pods: dict[str, Pod] = {}
        self.servers: dict[str, PodServers] = {}
        self.pod_labels: dict[str, dict[str, str]] = {}
        self.ns_labels: dict[str, dict[str, str]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.last_latency = 0.0        # seconds from the API's answer to the last node's table

    # ------------------------------------------------------------ the world
    def setup(self) -> None:
        for ns in NAMESPACES:
            self.kube.create_namespace(ns)
            self.ns_labels[ns] = {}
        k = 0
        for ns in NAMESPACES:
            for name in PODS:
                key = f"{ns}/{name}"
                def serve(path: str, key: str = key) -> None:
                    self.servers[key] = PodServers(path)      # listening before the pod has an address
                pod = self.c.add_pod(k % len(self.c.nodes), {"pod": name}, ns, name, PORTS, before_add=serve)
                self.pods[key] = pod
                self.pod_labels[key] = {"pod": name}
                k += 1
        for key, pod in self.pods.items():
            self.wait_seen(f"Pod/{key}", self._pod_version(pod))

    def _pod_version(self, pod: Pod) -> str:
        return str(self.kube.pod_version(pod.object_name, pod.namespace))

    def ip_of(self) -> dict[str, str]:
        return {k: p.ip for k, p in self.pods.items()}

    def node_of(self) -> dict[str, int]:
        return {k: p.node for k, p in self.pods.items()}

    # ------------------------------------------------------------ changes, each waited for on every node
    def seen(self, node: int, obj: str) -> tuple[str | None, bool]:
        status, body = http_get_unix(self.c.sock(node), "/policy/seen?" + urllib.parse.urlencode({"object": obj}))
        if status != 200:
            raise NotProgrammed(f"n{node + 1}: /policy/seen answered {status}: {body[:200]!r}")
        doc = json.loads(body)
        return doc.get("resourceVersion"), bool(doc.get("ready"))

    def wait_seen(self, obj: str, version: str | None, t0: float | None = None, timeout: float | None = None
                  ) -> float:
        """Until every live node's table reflects `version` of obj (None: obj deleted); seconds
        (timeout: program_timeout unless given)."""
        t0 = time.monotonic() if t0 is None else t0
        timeout = self.program_timeout if timeout is None else timeout
        deadline = t0 + timeout
        for node in self.c.live:
            while True:
                have, ready = self.seen(node, obj)
                if ready and (have == version if version is None or have is None
                              else int(have) >= int(version)):
                    break
                if time.monotonic() > deadline:
                    raise NotProgrammed(f"n{node + 1} did not program {obj} at version {version} within "
                                        f"{timeout:.0f}s (it has {have}, ready={ready})")
                time.sleep(0.01)
        self.last_latency = time.monotonic() - t0
        return self.last_latency

    def apply(self, policy: dict[str, Any]) -> float:
        meta = policy["metadata"]
        t0 = time.monotonic()
        version = self.kube.apply_policy(policy)
        self.policies[f"{meta['namespace']}/{meta['name']}"] = policy
        return self.wait_seen(f"NetworkPolicy/{meta['namespace']}/{meta['name']}", version, t0)

    def delete(self, namespace: str, name: str) -> float:
        t0 = time.monotonic()
        self.kube.delete_policy(namespace, name)
        self.policies.pop(f"{namespace}/{name}", None)
        return self.wait_seen(f"NetworkPolicy/{namespace}/{name}", None, t0)

    def apply_cluster_policy(self, policy: dict[str, Any], timeout: float | None = None) -> float:
        """Create or replace a ClusterNetworkPolicy; seconds until every node programmed it
        (timeout: longer than program_timeout where the agents have yet to find the CRD)."""
        t0 = time.monotonic()
        version = self.kube.apply_cluster_policy(policy)
        return self.wait_seen(f"ClusterNetworkPolicy//{policy['metadata']['name']}", version, t0, timeout)

    def delete_cluster_policy(self, name: str) -> float:
        t0 = time.monotonic()
        self.kube.delete_cluster_policy(name)
        return self.wait_seen(f"ClusterNetworkPolicy//{name}", None, t0)

    def delete_all(self) -> None:
        for ns, name in self.kube.policies():
            self.delete(ns, name)

    def label_pod(self, namespace: str, name: str, labels: dict[str, str]) -> float:
        t0 = time.monotonic()
        version = self.kube.label_pod(name, namespace, labels)
        self.pod_labels[f"{namespace}/{name}"] = dict(labels)
        return self.wait_seen(f"Pod/{namespace}/{name}", version, t0)

    def label_namespace(self, namespace: str, labels: dict[str, str]) -> float:
        t0 = time.monotonic()
        version = self.kube.label_namespace(namespace, labels)
        self.ns_labels[namespace] = dict(labels)
        return self.wait_seen(f"Namespace//{namespace}", version, t0)

    def reset(self) -> None:
        """No policies, every label as setup made it."""
        self.delete_all()
        for key, labels in list(self.pod_labels.items()):
            ns, name = key.split("/")
            if labels != {"pod": name}:
                self.label_pod(ns, name, {"pod": name})
        for ns, labels in list(self.ns_labels.items()):
            if labels:
                self.label_namespace(ns, {})

    # ------------------------------------------------------------ the matrix
    def matrix(self, port: int, proto: str) -> dict[tuple[str, str], bool]:
        sources = {k: p.netns for k, p in self.pods.items()}
        targets = [Target(k, p.ip) for k, p in self.pods.items()]
        return probe(sources, targets, port, proto)

    def iperf(self, server: str, client: str, seconds: int = 2, timeout: float = 15.0) -> float:
        """Gbit/s of TCP client → server (iperf3 in the two pods' namespaces), retried until the
        server listens (RuntimeError after `timeout` seconds)."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.pods[server].name, "iperf3", "-s", "-1", "-p", "5201"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while True:
                out = subprocess.run(["ip", "netns", "exec", self.pods[client].name, "iperf3", "-c",
                                      self.pods[server].ip, "-p", "5201", "-t", str(seconds), "-J"],
                                     capture_output=True, text=True)
                doc = json.loads(out.stdout or "{}")
                if out.returncode == 0 and "sum_received" in doc.get("end", {}):
                    return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9
                if time.monotonic() > deadline:
                    raise RuntimeError(f"iperf3 {client} → {server}: {doc.get('error') or out.stderr[-500:]}")
        finally:
            srv.kill()
            srv.wait()

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def render_matrix(got: dict[tuple[str, str], bool], want: dict[tuple[str, str], bool] | None = None) -> str:
    """The truth table as e2e prints it: rows sources, columns destinations; '.' open, 'X' closed,
    and a cell that differs from `want` in brackets."""
    keys = sorted({s for s, _ in got} | {d for _, d in got})
    lines = ["      " + " ".join(f"{k:>5}" for k in keys)]
    for s in keys:
        row = []
        for d in keys:
            if s == d:
                row.append("    -")
                continue
            cell = "." if got.get((s, d)) else "X"
            if want is not None and want.get((s, d)) != got.get((s, d)):
                cell = f"[{cell}]"
            row.append(f"{cell:>5}")
        lines.append(f"{s:>5} " + " ".join(row))
    return "\n".join(lines)
