"""The Kubernetes datastore (`podnet agent --datastore kubernetes`): no etcd of podnet's own.

  this node's pod CIDRs   Node.spec.podCIDRs (kube-controller-manager --allocate-node-cidrs);
                          host-local hands out addresses inside them
  peers                   the other Node objects: InternalIP, and what each podnet agent
                          publishes as annotations (podnet.io/underlay-addr, podnet.io/backend,
                          podnet.io/vtep-mac)
  changes                 list + watch of Nodes (a relist — full resync — after any break or a
                          410 Gone); a deleted Node's routes go at once
  leaks                   this node's Pods (status.podIPs) against host-local's leases: a lease no
                          pod holds, past a grace period, is released (agent/leakgc.py)

The only module that imports the Kubernetes client: lightkube (pinned in pyproject; ~0.13 s
to import against ~0.3 s for the official client, maintained; see README "Why lightkube").
Configuration: --kubeconfig, else in-cluster (the DaemonSet's service account), else
$KUBECONFIG / ~/.kube/config.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lightkube import Client, KubeConfig  # pinned in pyproject: lightkube==1.0.1
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

log = logging.getLogger(__name__)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
ANNOTATION = "podnet.io/"


class NotReady(Exception):
    """This node has no pod CIDR yet (the controller manager has not assigned one)."""


def _pod_cidrs(node: Any) -> list[IPNet]:
    spec = node.spec
    raw = list(spec.podCIDRs or []) if spec is not None else []
    if not raw and spec is not None and spec.podCIDR:
        raw = [spec.podCIDR]
    return [ipaddress.ip_network(c) for c in raw]


def _name(obj: Any) -> str:
    return str(obj.metadata.name)


def _internal_ip(node: Any) -> str:
    for a in (node.status.addresses or []) if node.status is not None else []:
        if a.type == "InternalIP":
            return str(a.address)
    return ""


class KubePeers:
    def __init__(self, node: str, kubeconfig: str = "", client: Client | None = None,
                 gc: Callable[[set[str]], object] | None = None, gc_interval: float = 60.0) -> None:
        """gc(live pod IPs of this node) runs from housekeeping every gc_interval seconds
        (agent/leakgc.py releases the host-local leases no pod holds)."""
        self.node = node
        self.gc, self.gc_interval = gc, gc_interval
        self._last_gc = time.monotonic()
        if client is None:
            config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
            client = Client(config, field_manager="podnet")
        self.client = client
        self._nodes: dict[str, Any] = {}
        self._synced = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ this node
    def my_pod_cidrs(self) -> list[IPNet]:
        cidrs = _pod_cidrs(self.client.get(Node, self.node))
        if not cidrs:
            raise NotReady(f"node {self.node} has no spec.podCIDRs yet (is --allocate-node-cidrs on?)")
        return cidrs

    def internal_ip(self) -> str:
        return _internal_ip(self.client.get(Node, self.node))

    def join(self, info: dict[str, str]) -> None:
        """Publish what the other agents need as annotations on our Node (a merge patch)."""
        ann = {f"{ANNOTATION}{k.replace('_', '-')}": v for k, v in
               (("underlay_addr", info.get("addr", "")), ("backend", info.get("backend", "")),
                ("vtep_mac", info.get("vtep_mac", ""))) if v}
        self.client.patch(Node, self.node, {"metadata": {"annotations": ann}}, patch_type=PatchType.MERGE)

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        """An Event on our Node (`kubectl describe node` shows it); best effort."""
        import datetime

        from lightkube.models.core_v1 import EventSource, ObjectReference
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Event
        now = datetime.datetime.now(datetime.UTC)
        ev = Event(metadata=ObjectMeta(generateName=f"{self.node}.podnet-", namespace="default"),
                   involvedObject=ObjectReference(kind="Node", name=self.node, uid=self.node, apiVersion="v1"),
                   reason=reason, message=message, type=kind, source=EventSource(component="podnet-agent", host=self.node),
                   firstTimestamp=now, lastTimestamp=now, count=1)
        try:
            self.client.create(ev, namespace="default")
        except Exception as e:  # noqa: BLE001 - an event is a courtesy, never a failure
            log.info("could not record event %s: %s", reason, e)

    def heartbeat(self) -> None:
        """Node liveness is Kubernetes' business (node lease, controller); nothing to renew."""

    def housekeeping(self) -> None:
        """Pod CIDRs belong to the controller manager; what can leak is a lease inside ours."""
        if self.gc is not None and time.monotonic() - self._last_gc >= self.gc_interval:
            self._last_gc = time.monotonic()
            self.gc(self.pod_ips())

    def pod_ips(self) -> set[str]:
        """The addresses of this node's pods that are not finished (Pod status.podIPs)."""
        ips: set[str] = set()
        for pod in self.client.list(Pod, namespace="*", fields={"spec.nodeName": self.node}):
            st = pod.status
            if st is None or st.phase in ("Succeeded", "Failed"):
                continue
            ips.update(a.ip for a in st.podIPs or [] if a.ip)
            if st.podIP:
                ips.add(st.podIP)
        return ips

    # ------------------------------------------------------------ the others
    def _relist(self) -> str:
        listing = self.client.list(Node)
        nodes = {_name(n): n for n in listing}
        with self._lock:
            self._nodes, self._synced = nodes, True
        return listing.resourceVersion if nodes else ""

    def _snapshot(self) -> dict[str, Any]:
        if not self._synced:   # before the watch's first list: read now, never route from an empty view
            self._relist()
        with self._lock:
            return dict(self._nodes)

    def nodes(self) -> dict[str, dict[str, str]]:
        out = {}
        for name, n in self._snapshot().items():
            ann = n.metadata.annotations or {}
            addr = ann.get(f"{ANNOTATION}underlay-addr") or _internal_ip(n)
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                continue
            out[name] = {"node": name, "addr": addr, "backend": ann.get(f"{ANNOTATION}backend", ""),
                         "vtep_mac": ann.get(f"{ANNOTATION}vtep-mac", "")}
        return out

    def owners(self) -> dict[IPNet, str]:
        return {c: name for name, n in self._snapshot().items() for c in _pod_cidrs(n)}

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        stopped = threading.Event()

        def run() -> None:
            while not stopped.is_set():
                try:
                    rv = self._relist()                          # (re)sync: events may have been missed
                    wake()
                    for kind, obj in self.client.watch(Node, resource_version=rv or None):
                        if stopped.is_set():
                            return
                        with self._lock:
                            if kind == "DELETED":
                                self._nodes.pop(_name(obj), None)
                            else:
                                self._nodes[_name(obj)] = obj
                        wake()
                except Exception as e:  # noqa: BLE001 - API server gone, 410 Gone, stream cut: relist
                    if stopped.is_set():
                        return
                    log.warning("node watch broke (%s): relisting", e)
                    time.sleep(1.0)

        threading.Thread(target=run, name="podnet-node-watch", daemon=True).start()
        return stopped.set
