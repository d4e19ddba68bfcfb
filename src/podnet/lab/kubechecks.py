"""What a user checks on a cluster with real nodes, through the API and `kubectl exec` — shared by
`podnet demo --kubelet`, the kubelet test tier and the pod-startup bench.

  deploy_probe   a Deployment of the probe image spread over the nodes, and a ClusterIP Service
  probe          `kubectl exec POD -- pnprobe probe tcp|udp HOST PORT` (the answer: the server's hostname)
  pod_pairs      every pod to every other pod by Pod IP, TCP and UDP
  via_service    every pod to the Service's ClusterIP (kube-proxy nftables → a backend pod)
  host_port      a pod with a hostPort, reached on its node's address from the fabric
"""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..net import netns

PROBE_LABEL = "app"


@dataclass(frozen=True)
class RunningPod:
    name: str
    ip: str
    node: str
    namespace: str = "default"
    ips: tuple[str, ...] = ()          # status.podIPs (a dual-stack pod: one per family)

    def ip_of(self, family: int) -> str:
        return next((a for a in self.ips or (self.ip,) if (":" in a) == (family == 6)), "")


def deployment(name: str, image: str, replicas: int, namespace: str = "default",
               http_ready: bool = False) -> dict[str, Any]:
    """The probe server as a Deployment whose pods spread evenly over the nodes; http_ready: its
    readinessProbe is an HTTP GET (kubelet, from the node, to the pod), else a TCP connect."""
    labels = {PROBE_LABEL: name}
    ready = {"httpGet": {"path": "/", "port": 80}} if http_ready else {"tcpSocket": {"port": 80}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 2,
                         "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                        "whenUnsatisfiable": "DoNotSchedule",
                                                        "labelSelector": {"matchLabels": labels}}],
                         "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                                         "ports": [{"containerPort": 80}, {"containerPort": 81, "protocol": "UDP"}],
                                         "readinessProbe": {**ready, "periodSeconds": 1}}]}}}}


def service(name: str, namespace: str = "default", dual: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {PROBE_LABEL: name}, **({"ipFamilyPolicy": "RequireDualStack"} if dual else {}),
                     "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "udp", "port": 81, "protocol": "UDP"}]}}


def apply(lab: Any, *docs: dict[str, Any]) -> None:
    lab.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))


def running_pods(lab: Any, selector: str, namespace: str = "default") -> list[RunningPod]:
    items = lab.get("pods", "-n", namespace, "-l", selector)["items"]
    return [RunningPod(p["metadata"]["name"], p["status"].get("podIP", ""), p["spec"].get("nodeName", ""), namespace,
                       tuple(a["ip"] for a in p["status"].get("podIPs") or []))
            for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def deploy_probe(lab: Any, name: str, replicas: int, image: str, timeout: float = 180,
                 http_ready: bool = False, dual: bool = False) -> list[RunningPod]:
    """The Deployment and its Service (dual: a dual-stack one); its pods once every replica is Ready."""
    apply(lab, deployment(name, image, replicas, http_ready=http_ready), service(name, dual=dual))
    lab.kubectl("rollout", "status", f"deployment/{name}", f"--timeout={int(timeout)}s", timeout=timeout + 10)
    return wait_pods(lab, f"{PROBE_LABEL}={name}", replicas, timeout)


def wait_pods(lab: Any, selector: str, count: int, timeout: float = 120, namespace: str = "default") -> list[RunningPod]:
    deadline = time.monotonic() + timeout
    while True:
        pods = running_pods(lab, selector, namespace)
        if len(pods) == count and all(p.ip for p in pods):
            return pods
        if time.monotonic() > deadline:
            raise TimeoutError(f"{selector}: {len(pods)}/{count} pods running after {timeout:.0f}s")
        time.sleep(0.5)


def probe(lab: Any, src: RunningPod, proto: str, host: str, port: int, timeout: float = 2) -> str:
    """The answer of `pnprobe probe` run inside src ("" if none)."""
    out = lab.kubectl("exec", "-n", src.namespace, src.name, "--", "pnprobe", "probe", "-t", str(timeout), proto,
                      host, str(port), check=False, timeout=timeout + 30)
    return str(out).strip()


def pod_pairs(lab: Any, pods: list[RunningPod], protos: tuple[str, ...] = ("tcp", "udp"),
              family: int = 0) -> dict[tuple[str, str, str], bool]:
    """(src, dst, proto) → the dst pod answered with its own name (TCP to 80, UDP to 81), to its
    Pod IP (family 4/6: its address of that family)."""
    jobs = [(s, d, proto) for s in pods for d in pods if s != d for proto in protos]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda j: probe(lab, j[0], j[2], j[1].ip_of(family) if family else j[1].ip,
                                                80 if j[2] == "tcp" else 81), jobs))
    return {(s.name, d.name, proto): answer == d.name for (s, d, proto), answer in zip(jobs, answers, strict=True)}


def via_service(lab: Any, pods: list[RunningPod], cluster_ip: str, tries: int = 3) -> dict[str, set[str]]:
    """src pod → the backends that answered through the ClusterIP (TCP, `tries` connections each)."""
    names = {p.name for p in pods}
    jobs = [s for s in pods for _ in range(tries)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda s: probe(lab, s, "tcp", cluster_ip, 80), jobs))
    out: dict[str, set[str]] = {p.name: set() for p in pods}
    for s, answer in zip(jobs, answers, strict=True):
        if answer in names:
            out[s.name].add(answer)
    return out


def host_port_pod(name: str, image: str, node: str, host_port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                                             "labels": {PROBE_LABEL: name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "Never",
                "ports": [{"containerPort": 80, "hostPort": host_port}],
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}


def http_from(netns_name: str, addr: str, port: int, timeout: float = 2) -> str:
    """GET / from a lab namespace (the fabric: outside every node); the body, "" if no answer."""
    with netns.opened(f"/run/netns/{netns_name}") as fd, netns.entered(fd):
        try:
            with socket.create_connection((addr, port), timeout=timeout) as s:
                s.sendall(f"GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
                chunks = []
                while chunk := s.recv(4096):
                    chunks.append(chunk)
        except OSError:
            return ""
    return b"".join(chunks).split(b"\r\n\r\n", 1)[-1].decode().strip()


def via_api_proxy(lab: Any, namespace: str, kind: str, name: str, port: int, timeout: float = 10) -> str:
    """GET / through the API server's proxy to a pod or a Service (`kubectl get --raw …/proxy/`):
    the API server itself connects to the pod — what `kubectl port-forward`-less tooling,
    dashboards and metrics pipelines rely on.  The answer's body, "" if it failed."""
    out = lab.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/{kind}/{name}:{port}/proxy/",
                      f"--request-timeout={int(timeout)}s", check=False, timeout=timeout + 20)
    return str(out).strip()


def webhook_objects(lab: Any, name: str, image: str, namespace: str = "default",
                    guarded: str = "podnet-webhook") -> list[dict[str, Any]]:
    """A validating admission webhook served by a pod (`pnprobe webhook`, TLS with a certificate of
    the lab's CA for the Service's DNS name): a Secret, a Deployment, a Service and the
    ValidatingWebhookConfiguration, which guards ConfigMaps in the namespace `guarded` and refuses
    those labelled podnet.io/deny (failurePolicy Fail: an unreachable webhook refuses too)."""
    import base64
    pair = lab.cp.pki.issue(f"webhook-{name}", f"{name}.{namespace}.svc", server=True,
                            dns=(f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"))
    with open(pair.cert, "rb") as c, open(pair.key, "rb") as k, open(lab.cp.pki.ca.cert, "rb") as ca:
        crt, key, ca_bundle = c.read(), k.read(), ca.read()
    labels = {PROBE_LABEL: name}

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": f"{name}-tls", "namespace": namespace}, "data": {"tls.crt": b64(crt), "tls.key": b64(key)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels}, "spec": {
                 "terminationGracePeriodSeconds": 2,
                 "volumes": [{"name": "tls", "secret": {"secretName": f"{name}-tls"}}],
                 "containers": [{"name": "webhook", "image": image, "imagePullPolicy": "Never",
                                 "args": ["webhook", "-cert", "/tls/tls.crt", "-key", "/tls/tls.key", "-port", "8443"],
                                 "ports": [{"containerPort": 8443}],
                                 "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                                 "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443, "protocol": "TCP"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": name}, "webhooks": [{
             "name": f"{name}.podnet.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "failurePolicy": "Fail", "timeoutSeconds": 5,
             "clientConfig": {"service": {"name": name, "namespace": namespace, "path": "/validate", "port": 443},
                              "caBundle": b64(ca_bundle)},
             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": guarded}},
             "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                        "resources": ["configmaps"]}]}]},
    ]


def until(cond: Any, within: float = 15.0) -> bool:
    """cond() became true within `within` seconds (polled every 0.3 s)."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def demo_verdict(results: dict[str, bool], started: float) -> int:
    """A demo's end: every failed check named, then PASS (all held) or FAIL, with the time taken."""
    failed = [k for k, v in results.items() if not v]
    for k in failed:
        print(f"FAILED: {k}")
    ok = bool(results) and not failed
    print(f"podnet demo: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - started:.1f}s in all)")
    return 0 if ok else 1
