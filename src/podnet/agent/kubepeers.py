"""The Kubernetes datastore (`podnet agent --datastore kubernetes`): no etcd of podnet's own.

  this node's pod CIDRs   Node.spec.podCIDRs (kube-controller-manager --allocate-node-cidrs);
                          host-local hands out addresses inside them
  peers                   the other Node objects: InternalIP, and what each podnet agent
                          publishes as annotations (podnet.io/underlay-addr, podnet.io/backend,
                          podnet.io/vtep-mac, podnet.io/wg-pubkey…: every key of its record)
  changes                 list + watch of Nodes: the watch resumes from the last resourceVersion it
                          saw (events and bookmarks) after a break; a 410 Gone (that version was
                          compacted away) relists — a full resync, so a Node deleted meanwhile
                          goes too; a deleted Node's routes go at once
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import Client, KubeConfig  # pinned in pyproject: lightkube==1.0.1
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from .kubewatch import Informer

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


def _internal_ip(node: Any) -> str:
    ips = _internal_ips(node)
    return ips[0] if ips else ""


def _internal_ips(node: Any) -> list[str]:
    """The Node's InternalIPs in its order (a dual-stack node has one per family)."""
    return [str(a.address) for a in ((node.status.addresses or []) if node.status is not None else [])
            if a.type == "InternalIP"]


@dataclass(frozen=True, slots=True)
class NodeRoutes:
    """What routing reads of a Node — the Node watch keeps this, not the object (a Node's status
    is kilobytes of images and conditions, updated by its kubelet all the time)."""
    pod_cidrs: tuple[str, ...]
    internal_ips: tuple[str, ...]
    annotations: tuple[tuple[str, str], ...]          # podnet.io/* only

    @staticmethod
    def of(node: Any) -> NodeRoutes:
        ann = (node.metadata.annotations if node.metadata is not None else None) or {}
        return NodeRoutes(tuple(str(c) for c in _pod_cidrs(node)), tuple(_internal_ips(node)),
                          tuple(sorted((k, v) for k, v in ann.items() if k.startswith(ANNOTATION))))


def relay_client(client: Client, url: str, ca: str = "") -> Client:
    """A client for the relay: the API client's credentials (the relay asks the API server who
    they are), the relay's URL and CA (default: the API server's CA)."""
    import msgspec
    from lightkube import KubeConfig
    single = client.config
    cluster = msgspec.structs.replace(single.cluster, server=url.rstrip("/"),
                                      **({"certificate_auth": ca, "certificate_auth_data": None} if ca else {}))
    return Client(KubeConfig.from_one(cluster=cluster, user=single.user), field_manager="podnet")


class KubePeers:
    def __init__(self, node: str, kubeconfig: str = "", client: Client | None = None,
                 gc: Callable[[set[str]], object] | None = None, gc_interval: float = 60.0,
                 watch_timeout: int = 300, relay: str = "", relay_ca: str = "") -> None:
        """gc(live pod IPs of this node) runs from housekeeping every gc_interval seconds
        (agent/leakgc.py releases the host-local leases no pod holds).  watch_timeout: the
        seconds after which the API server ends a watch (it is then resumed), jittered."""
        self.node = node
        self.gc, self.gc_interval = gc, gc_interval
        self._last_gc = time.monotonic()
        if client is None:
            config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
            client = Client(config, field_manager="podnet")
        self.client = client
        self.watch_client = relay_client(client, relay, relay_ca) if relay else client
        self.informer = Informer(self.watch_client, Node, watch_timeout=watch_timeout, what="Nodes", keep=NodeRoutes.of,
                                 quiet_unchanged=True)

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
        ann: dict[str, str | None] = {f"{ANNOTATION}{'underlay-addr' if k == 'addr' else k.replace('_', '-')}": v
                                      for k, v in info.items() if v and k != "node"}
        meta = self.client.get(Node, self.node).metadata
        current = (meta.annotations if meta is not None else None) or {}
        for stale in (k for k in current if k.startswith(ANNOTATION) and k not in ann):
            ann[stale] = None        # e.g. wg-pubkey of a node that no longer encrypts: removed (merge patch null)
        self.client.patch(Node, self.node, {"metadata": {"annotations": ann}}, patch_type=PatchType.MERGE)

    def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        """An Event on our Node (`kubectl describe node` shows it); best effort."""
        self.object_event("Node", "", self.node, reason, message, kind)

    def object_event(self, involved: str, namespace: str, name: str, reason: str, message: str,
                     kind: str = "Warning") -> None:
        """An Event on any object (a Pod denied at admission, a NetworkPolicy this kernel cannot
        fully enforce): `kubectl describe` shows it; best effort."""
        import datetime

        from lightkube.models.core_v1 import EventSource, ObjectReference
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Event
        now = datetime.datetime.now(datetime.UTC)
        ns = namespace or "default"
        api = "networking.k8s.io/v1" if involved == "NetworkPolicy" else "v1"
        ev = Event(metadata=ObjectMeta(generateName=f"{name}.podnet-", namespace=ns),
                   involvedObject=ObjectReference(kind=involved, name=name, namespace=namespace or None, apiVersion=api,
                                                  uid=name if involved == "Node" else None),
                   reason=reason, message=message, type=kind, source=EventSource(component="podnet-agent", host=self.node),
                   firstTimestamp=now, lastTimestamp=now, count=1)
        try:
            self.client.create(ev, namespace=ns)
        except Exception as e:  # noqa: BLE001 - an event is a courtesy, never a failure
            log.info("could not record event %s: %s", reason, e)

    def requests(self) -> list[str]:
        """Operator requests (`podnet node rotate-key`) go through etcd: none here."""
        return []

    def request_done(self, name: str) -> None:
        """Nothing is ever pending."""

    def heartbeat(self) -> None:
        """Node liveness is Kubernetes' business (node lease, controller); nothing to renew."""

    def housekeeping(self) -> None:
        """Pod CIDRs belong to the controller manager; what can leak is a lease inside ours."""
        if self.gc is not None and time.monotonic() - self._last_gc >= self.gc_interval:
            self._last_gc = time.monotonic()
            live = self.pod_ips()
            log.info("leak check: %d pod addresses live on %s", len(live), self.node)
            self.gc(live)

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
    @property
    def trouble(self) -> str:
        """Why the Nodes cannot be followed right now ("" = they can)."""
        return self.informer.trouble

    @property
    def relists(self) -> int:
        return self.informer.relists

    def _snapshot(self) -> dict[str, Any]:
        if not self.informer.synced.is_set():  # before the watch's first list: read now, never route from nothing
            self.informer.relist()
        return self.informer.snapshot()

    def nodes(self) -> dict[str, dict[str, str]]:
        out = {}
        n: NodeRoutes
        for name, n in self._snapshot().items():
            ann = dict(n.annotations)
            addr = ann.get(f"{ANNOTATION}underlay-addr") or (n.internal_ips[0] if n.internal_ips else "")
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                continue
            published = {k[len(ANNOTATION):].replace("-", "_"): v for k, v in ann.items()}
            published.pop("underlay_addr", None)
            other = _other_family(addr, list(n.internal_ips))    # a dual-stack underlay: the other family's
            out[name] = {"backend": "", "vtep_mac": "", **published, "node": name, "addr": addr, **other}
        return out

    def owners(self) -> dict[IPNet, str]:
        return {ipaddress.ip_network(c): name for name, n in self._snapshot().items() for c in n.pod_cidrs}

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Follow Node changes until the returned function is called; `wake` after each change, a
        relist, and when following starts or stops working (self.trouble says why)."""
        self.informer.on_event = lambda _kind, _obj: wake()
        self.informer.on_relist = lambda _objs: wake()
        self.informer.on_trouble = wake
        return self.informer.start()


def _other_family(addr: str, ips: list[str]) -> dict[str, str]:
    """{"addr6": …} (or "addr4") when the Node has an InternalIP of the other family than `addr`."""
    family = ipaddress.ip_address(addr).version
    for ip in ips:
        try:
            v = ipaddress.ip_address(ip).version
        except ValueError:
            continue
        if v != family:
            return {f"addr{v}": ip}
    return {}


def cluster_snapshot(kubeconfig: str) -> tuple[dict[str, dict[str, str]], dict[IPNet, str], dict[str, str]]:
    """One read of the cluster for a tool (`podnet trace`): nodes (name → {"addr": InternalIP}),
    pod CIDRs (→ node), and pods ("namespace/name" → first pod IP)."""
    client = Client(KubeConfig.from_file(kubeconfig), field_manager="podnet")
    nodes: dict[str, dict[str, str]] = {}
    owners: dict[IPNet, str] = {}
    for n in client.list(Node):
        name = str(n.metadata.name) if n.metadata is not None else ""
        addr = _internal_ip(n)
        if name and addr:
            nodes[name] = {"node": name, "addr": addr}
        for cidr in _pod_cidrs(n):
            owners[cidr] = name
    pods = {}
    for p in client.list(Pod, namespace="*"):
        ip = p.status.podIP if p.status is not None else None
        if ip and p.metadata is not None:
            pods[f"{p.metadata.namespace}/{p.metadata.name}"] = str(ip)
    return nodes, owners, pods
