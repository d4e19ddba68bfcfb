"""The API side of the policy engine: informers on Pods, Namespaces, NetworkPolicies (all
namespaces) and ClusterNetworkPolicies (a CRD: not installed = none), feeding the engine once all
four have listed (never earlier: a table programmed
from a partial view would open what it should close — a previous agent's rules stay in the
kernel until then), a GET for a pod the watch has not shown yet, and Events.  The only policy
module that imports lightkube."""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from lightkube import Client  # pinned in pyproject: lightkube==1.0.1
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.resources.networking_v1 import NetworkPolicy

from ..kubewatch import Informer
from ..metrics import POD_EVENT_WAIT
from .cluster import PodInfo
from .engine import PolicyEngine

log = logging.getLogger(__name__)

POD_BATCH = 1000        # pod events programmed as one transaction at most
TIMINGS_KEPT = 4096     # the last pod events' arrival and commit times (GET /policy/seen shows them)

ClusterNetworkPolicy = create_global_resource("policy.networking.k8s.io", "v1beta1", "ClusterNetworkPolicy",
                                              "clusternetworkpolicies")


class PolicyWatch:
    def __init__(self, client: Client, engine: PolicyEngine, watch_timeout: int = 300,
                 on_synced: Callable[[], None] | None = None, watch_client: Client | None = None) -> None:
        """on_synced: after every full resync from the four lists (the first one makes the node ready).
        watch_client: where the four informers list and watch (a relay); a pod's GET stays on `client`."""
        self.client, self.engine, self.on_synced = client, engine, on_synced
        client = watch_client or client
        self.pods = Informer(client, Pod, on_event=self._pod, on_relist=self._relisted, watch_timeout=watch_timeout,
                             what="Pods", keep=pod_info)
        self.namespaces = Informer(client, Namespace, on_event=self._namespace, on_relist=self._relisted,
                                   watch_timeout=watch_timeout, what="Namespaces")
        self.policies = Informer(client, NetworkPolicy, on_event=self._policy, on_relist=self._relisted,
                                 watch_timeout=watch_timeout, what="NetworkPolicies")
        self.cluster_policies = Informer(client, ClusterNetworkPolicy, on_event=self._cluster_policy,
                                         on_relist=self._relisted, watch_timeout=watch_timeout,
                                         what="ClusterNetworkPolicies", optional=True)
        self._stops: list[Callable[[], None]] = []
        self._stopped = threading.Event()
        # Pod events go through a queue to one worker that programs all it finds queued as one
        # transaction; a (re)list supersedes what was queued before it (its epoch)
        self._pod_queue: queue.Queue[tuple[int, str, PodInfo, float]] = queue.Queue()
        self._epoch = 0
        # "namespace/name" → (resourceVersion, arrived, in the kernel): time.monotonic(), which is
        # CLOCK_MONOTONIC — one clock for every process of the machine, so a client can split its
        # own latency into the watch's and the agent's part (read under engine.lock)
        self.timings: OrderedDict[str, tuple[str, float, float]] = OrderedDict()

    @property
    def trouble(self) -> str:
        return "; ".join(t for t in (self.pods.trouble, self.namespaces.trouble, self.policies.trouble,
                                     self.cluster_policies.trouble) if t)

    def start(self) -> None:
        self._stops = [i.start() for i in (self.namespaces, self.policies, self.cluster_policies, self.pods)]
        threading.Thread(target=self._retry, name="podnet-policy-retry", daemon=True).start()
        threading.Thread(target=self._pod_worker, name="podnet-policy-pods", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        for s in self._stops:
            s()

    def _synced(self) -> bool:
        return all(i.synced.is_set() for i in (self.pods, self.namespaces, self.policies, self.cluster_policies))

    def _relisted(self, _objs: dict[str, Any]) -> None:
        """A (re)list of any kind: once all four have listed, the whole table from them."""
        if not self._synced():
            return
        with self.engine.lock:
            self._epoch += 1          # the queued pod events are in the caches this programs from
        self.engine.set_all(
            pods=self.pods.snapshot(),
            namespaces={k: dict(o.metadata.labels or {}) for k, o in self.namespaces.snapshot().items()},
            policies={k: o.to_dict() for k, o in self.policies.snapshot().items()},
            cluster_policies={k: _as_dict(o) for k, o in self.cluster_policies.snapshot().items()})
        self.engine.retry_denied()
        if self.on_synced is not None:
            self.on_synced()

    def _pod(self, kind: str, obj: Any) -> None:
        if self.engine.ready:
            self._pod_queue.put((self._epoch, kind, obj, time.monotonic()))

    def _pod_worker(self) -> None:
        while not self._stopped.is_set():
            try:
                batch = [self._pod_queue.get(timeout=1.0)]
            except queue.Empty:
                continue
            while len(batch) < POD_BATCH:
                try:
                    batch.append(self._pod_queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.engine.lock:
                    current = [(kind, obj) for epoch, kind, obj, _ in batch if epoch == self._epoch]
                    if current:
                        self.engine.pod_events(current)
                    done = time.monotonic()
                    for _, _, obj, arrived in batch:      # in the kernel now (or superseded by a whole table)
                        self.timings[obj.key] = (obj.version, arrived, done)
                        self.timings.move_to_end(obj.key)
                    while len(self.timings) > TIMINGS_KEPT:
                        self.timings.popitem(last=False)
                for *_, arrived in batch:
                    POD_EVENT_WAIT.observe(done - arrived)
            except Exception as e:  # noqa: BLE001 - the table stays as it was; the whole of it again
                log.warning("pod events (%d): %s: programming the whole table again", len(batch), e)
                try:
                    self.engine.resync()
                except Exception as again:  # noqa: BLE001 - the next relist or event tries again
                    log.warning("policy resync: %s", again)

    def _namespace(self, kind: str, obj: Any) -> None:
        if self.engine.ready:
            self.engine.namespace_event(kind, str(obj.metadata.name), dict(obj.metadata.labels or {}),
                                        str(obj.metadata.resourceVersion or ""))

    def _policy(self, kind: str, obj: Any) -> None:
        if self.engine.ready:
            self.engine.policy_event(kind, obj.to_dict())

    def _cluster_policy(self, kind: str, obj: Any) -> None:
        if self.engine.ready:
            self.engine.cluster_policy_event(kind, _as_dict(obj))

    def _retry(self) -> None:
        while not self._stopped.wait(2.0):
            if self.engine.ready and self.engine.view.denied:
                try:
                    self.engine.retry_denied()
                except Exception as e:  # noqa: BLE001 - the next round tries again
                    log.warning("retrying denied pods: %s", e)

    def fetch_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get(Pod, name, namespace=namespace).to_dict())
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise


def pod_info(pod: Any) -> PodInfo:
    """What policy reads of a Pod (its identity, labels, node, addresses, named ports and version),
    straight from the decoded object: the Pod watch's cache of every Pod in the cluster holds these
    small objects (not the whole Pod: managedFields, the containers' specs, conditions are ~20×
    more), and the engine shares them."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    ports = [(str(p.name), str(p.protocol or "TCP"), int(p.containerPort))
             for c in (spec.containers if spec is not None else None) or [] for p in c.ports or [] if p.name]
    ips = [a.ip for a in (status.podIPs if status is not None else None) or [] if a.ip] or \
        ([status.podIP] if status is not None and status.podIP else [])
    return PodInfo.make(str(meta.namespace), str(meta.name), meta.labels, ips,
                        str((spec.nodeName if spec is not None else None) or ""),
                        bool(spec.hostNetwork) if spec is not None else False, ports, str(meta.resourceVersion or ""))


def _as_dict(obj: Any) -> dict[str, Any]:
    """A generic resource's JSON (lightkube keeps a CRD object's fields as a dict)."""
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)
