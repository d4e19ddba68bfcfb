"""The virtual cluster (`podnet lab`, `podnet demo`, the cluster tests): node namespaces on a
fabric, etcd or a real Kubernetes control plane, an agent per node, pods.

  cluster.py        the namespaces, etcd, agents and pods (Cluster)
  pki.py            the lab's CA and certificates (Kubernetes datastore)
  control_plane.py  kube-apiserver, kube-controller-manager, kube-scheduler as the lab's processes
  kube.py           what the lab does in the API as kubelets and an admin would (Nodes, Pods, tokens)
  tor.py            the top-of-rack router and external host of backend bgp
  capture.py        what crossed the fabric (WireGuard's proof); continuity.py: traffic through restarts
"""
from __future__ import annotations

from .cluster import (
    CLUSTER_CIDR,
    ETCD_ADDR,
    FABRIC_NET,
    NETWORK,
    Cluster,
    Pod,
    ends_cleanly_on_signals,
    free_port,
    remove_kept,
)
from .tor import EXTERNAL_HOST, TOR_ADDR

__all__ = ["CLUSTER_CIDR", "ETCD_ADDR", "EXTERNAL_HOST", "FABRIC_NET", "NETWORK", "TOR_ADDR", "Cluster", "Pod",
           "ends_cleanly_on_signals", "free_port", "remove_kept"]
