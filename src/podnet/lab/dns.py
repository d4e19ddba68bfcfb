"""The kubelet lab's cluster DNS: CoreDNS as clusters deploy it (kind ships it too) — a kube-system
Deployment reading the API with its own ServiceAccount, the `kube-dns` Service on the service CIDR's
DNS address, and every kubelet's clusterDNS / clusterDomain pointing pods at it.

CoreDNS is built from source at a pinned release through the Go module proxy
(scripts/coredns-build.sh, cached outside the checkout) and packed as a lab image (no registry).
The Corefile answers the cluster's names only: the lab has no upstream resolver to forward to.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

COREDNS_VERSION = "v1.15.0"          # = scripts/coredns-build.sh (a unit test keeps them equal)
IMAGE = "localhost/podnet-lab/coredns:" + COREDNS_VERSION
CLUSTER_DOMAIN = "cluster.local"
NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}

COREFILE = f""".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}}
"""


class DnsError(RuntimeError):
    """CoreDNS is not built (the message says how)."""


def binary() -> Path:
    cache = Path(os.environ.get("PODNET_COREDNS_CACHE") or Path.home() / ".cache" / "podnet" / "coredns")
    path = cache / COREDNS_VERSION / "coredns"
    if not path.is_file():
        raise DnsError(f"no CoreDNS {COREDNS_VERSION} at {path}: run scripts/coredns-build.sh (once per machine)")
    return path


def image() -> tuple[str, Path]:
    """(image name, OCI tar) of CoreDNS: /coredns, run with -conf /etc/coredns/Corefile."""
    from .images import ImageConfig, cache_dir, layer_from_dir, write_archive
    exe = binary()
    key = hashlib.sha256(exe.read_bytes()).hexdigest()[:16]
    out = cache_dir() / f"coredns-{key}.oci.tar"
    if not out.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            root = Path(tmp) / "root"
            for d in ("etc/coredns", "tmp"):
                (root / d).mkdir(parents=True)
            shutil.copy(exe, root / "coredns")
            (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/coredns\nnobody:x:65534:65534::/:/coredns\n")
            layer = layer_from_dir(root, Path(tmp) / "layer.tar")
            write_archive(out, IMAGE, [layer], ImageConfig(["/coredns"], ["-conf", "/etc/coredns/Corefile"]))
    return IMAGE, out


def objects(dns_ips: list[str]) -> list[dict[str, Any]]:
    """What a cluster's DNS add-on is: RBAC, the Corefile, the Deployment, the kube-dns Service on
    `dns_ips` (one per family: a dual-stack lab serves DNS on both)."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
             {"name": "metrics", "port": 9153, "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **meta},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", **meta},
         "spec": {"replicas": 2, "selector": {"matchLabels": LABELS},
                  "template": {"metadata": {"labels": LABELS}, "spec": {
                      "serviceAccountName": "coredns", "priorityClassName": "system-cluster-critical",
                      "dnsPolicy": "Default",
                      "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                          {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": LABELS},
                                                              "topologyKey": "kubernetes.io/hostname"}}]}},
                      "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                      "containers": [{
                          "name": "coredns", "image": IMAGE, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                    {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                    {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                          "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                              "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 5,
                                            "periodSeconds": 5},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns",
                                                                  "items": [{"key": "Corefile", "path": "Corefile"}]}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", **meta,
                                                             "labels": {**LABELS, "kubernetes.io/name": "CoreDNS"}},
         "spec": {"selector": LABELS, "clusterIP": dns_ips[0], "clusterIPs": dns_ips,
                  **({"ipFamilyPolicy": "RequireDualStack"} if len(dns_ips) > 1 else {}), "ports": ports}},
    ]
