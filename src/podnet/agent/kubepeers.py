"""The Kubernetes datastore (`podnet agent --datastore kubernetes`): no etcd of podnet's own.

  this node's pod CIDRs   Node.spec.podCIDRs (kube-controller-manager --allocate-node-cidrs);
                          host-local hands out addresses inside them
  peers                   the other Node objects: InternalIP, and what each podnet agent
                          publishes as annotations (podnet.io/underlay-addr, podnet.io/backend,
                          podnet.io/vtep-mac)
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
import threading
import time
from collections.abc import Callable
from typing import Any

from lightkube import Client, KubeConfig  # pinned in pyproject: lightkube==1.0.1
from lightkube.core.exceptions import ApiError
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
                 gc: Callable[[set[str]], object] | None = None, gc_interval: float = 60.0,
                 watch_timeout: int = 300) -> None:
        """gc(live pod IPs of this node) runs from housekeeping every gc_interval seconds
        (agent/leakgc.py releases the host-local leases no pod holds).  watch_timeout: the
        seconds after which the API server ends a watch (it is then resumed), jittered."""
        self.node = node
        self.watch_timeout = watch_timeout
        self.trouble = ""          # why the Nodes cannot be followed right now ("" = they can)
        self.relists = 0
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
        """Follow Node changes until the returned function is called; `wake` after each change,
        after a relist, and when following starts or stops working (self.trouble says why)."""
        stopped = threading.Event()

        def run() -> None:
            rv = ""
            failures = 0
            while not stopped.is_set():
                try:
                    if not rv:
                        rv = self._relist()            # (re)sync: the whole truth, then only changes
                        self.relists += 1
                        wake()
                    for kind, obj in self._watch_from(rv):
                        if stopped.is_set():
                            return
                        rv = str(obj.metadata.resourceVersion or rv)
                        if kind != "BOOKMARK":
                            with self._lock:
                                if kind == "DELETED":
                                    self._nodes.pop(_name(obj), None)
                                else:
                                    self._nodes[_name(obj)] = obj
                        if failures or self.trouble:
                            failures, self.trouble = 0, ""
                            log.info("following Nodes again")
                        if kind != "BOOKMARK":
                            wake()
                except ApiError as e:
                    if stopped.is_set():
                        return
                    code = e.status.code
                    if code == 410:
                        log.warning("node watch: resourceVersion %s is gone (410, compacted): relisting", rv)
                        rv = ""
                        continue
                    failures += 1
                    self._trouble(f"the API refused to {'watch' if rv else 'list'} Nodes: "
                                  f"{code} {e.status.reason or ''} {e.status.message or ''}".strip(), wake)
                except Exception as e:  # noqa: BLE001 - API server gone, stream cut: resume from rv
                    if stopped.is_set():
                        return
                    failures += 1
                    self._trouble(f"the API server is unreachable ({type(e).__name__}: {e})", wake)
                if failures:
                    stopped.wait(min(10.0, 0.5 * 2 ** min(failures - 1, 5)))

        threading.Thread(target=run, name="podnet-node-watch", daemon=True).start()
        return stopped.set

    def _trouble(self, why: str, wake: Callable[[], None]) -> None:
        if why != self.trouble:
            log.warning("node watch: %s; the routes programmed so far stay", why)
            self.trouble = why
            wake()

    def _watch_from(self, rv: str) -> Any:
        """A watch of Nodes from `rv` with bookmarks (so a quiet watch still advances its version),
        ended by the server after about watch_timeout seconds.  lightkube's watch() has no bookmark
        parameter: its request builder is used directly (lightkube is pinned)."""
        import random

        from lightkube.types import on_error_raise
        timeout = int(self.watch_timeout * random.uniform(1.0, 1.2)) or 1
        gc: Any = self.client._client
        br = gc.prepare_request("list", res=Node, watch=True,
                                params={"resourceVersion": rv, "allowWatchBookmarks": "true",
                                        "timeoutSeconds": timeout})
        return gc.watch(br, on_error=on_error_raise)
