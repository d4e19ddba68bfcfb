"""What the policy engine knows about the cluster: every pod (labels, addresses, named container
ports, node), every namespace's labels, every NetworkPolicy — fed by the API's watches and, for
this node's pods, by CNI ADD itself (a pod's addresses are known here before kubelet reports them)."""
from __future__ import annotations

import ipaddress
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from .cnp import ClusterPolicy
from .spec import Policy

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


_LABELS: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
_labels_sweep_at = 4096
_labels_lock = threading.Lock()       # the Pod watch and CNI ADD's handlers make PodInfos at once


def intern_labels(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """One tuple per distinct label set (a cluster's pods share a few: a Deployment's replicas all
    have the same), so 150 000 pods do not hold 150 000 copies of them.  Weak, so labels unique to
    a pod (a StatefulSet's pod-name) do not pile up after it is gone: when the table doubles, the
    tuples nothing but the table holds are dropped."""
    global _labels_sweep_at
    with _labels_lock:
        kept = _LABELS.setdefault(labels, labels)
        if len(_LABELS) > _labels_sweep_at:
            # held by nothing else: the table's key and value (one object), the loop's name, the call's argument
            for t in [t for t in _LABELS if sys.getrefcount(t) <= 4]:
                del _LABELS[t]
            _labels_sweep_at = max(4096, 2 * len(_LABELS))
        return kept


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What policy knows of one pod.  An agent holds one per Pod of the whole cluster (150 000 in
    a 5000-node cluster), so it is small: slots, strings shared (interned names and label sets,
    each address's text made once here and used by every set it is in, one key string for the
    Pod watch's cache and the engine's indexes), and the Pod watch's cache holds these objects
    themselves — the engine shares them.  Addresses are kept as text only (an ipaddress object
    per pod costs ~130 bytes); `ips` parses them where a caller needs objects (explain, admission)."""
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    addrs: tuple[str, ...]
    node: str = ""
    host_network: bool = False
    ports: tuple[tuple[str, str, int], ...] = ()      # (name, protocol, number) of its containers' ports
    version: str = field(default="", compare=False)   # the Pod's resourceVersion (what /policy/seen reports)
    key: str = field(default="", compare=False, repr=False)   # namespace/name

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", f"{self.namespace}/{self.name}")

    @property
    def ips(self) -> tuple[IPAddr, ...]:
        return tuple(ipaddress.ip_address(a) for a in self.addrs)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pn, pr, n in self.ports if pn == name and pr == protocol), None)

    @staticmethod
    def make(namespace: str, name: str, labels: dict[str, str] | None, ips: list[str], node: str,
             host_network: bool, ports: list[tuple[str, str, int]], version: str) -> PodInfo:
        """From the API's fields (a dict's or a decoded model's): names and labels interned, each
        address checked and kept in its canonical text."""
        intern = sys.intern
        addrs = tuple(str(ipaddress.ip_address(ip)) for ip in ips)
        return PodInfo(intern(namespace), name,
                       intern_labels(tuple(sorted((intern(str(k)), intern(str(v)))
                                                  for k, v in (labels or {}).items()))),
                       addrs, intern(node), host_network, tuple(sorted(ports)), version)

    @staticmethod
    def from_api(obj: dict[str, Any]) -> PodInfo:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        ips = [a.get("ip") for a in status.get("podIPs") or [] if a.get("ip")] or \
            ([status["podIP"]] if status.get("podIP") else [])
        ports = [(str(p["name"]), str(p.get("protocol") or "TCP"), int(p["containerPort"]))
                 for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("name")]
        return PodInfo.make(str(meta.get("namespace")), str(meta.get("name")), meta.get("labels"), ips,
                            str(spec.get("nodeName") or ""), bool(spec.get("hostNetwork")), ports,
                            str(meta.get("resourceVersion") or ""))


@dataclass
class ClusterView:
    node: str
    pods: dict[str, PodInfo] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    cluster_policies: dict[str, ClusterPolicy] = field(default_factory=dict)   # key (CNP:name) → policy
    local: dict[str, LocalPod] = field(default_factory=dict)       # pod key → what CNI ADD gave it here
    denied: dict[str, str] = field(default_factory=dict)     # local pod key → why its policy is unknown (fail closed)
    _claims: dict[str, str] = field(default_factory=dict)     # address → the local pod key that holds it
    _by_ip: dict[str, tuple[str, ...]] = field(default_factory=dict)  # address → keys of pods the API gives it (a
    #   tuple: nearly always one, and a set per address of a big cluster costs 4× the memory)
    _by_ns: dict[str, list[Policy]] | None = None              # namespace → its policies (built on demand)

    # ------------------------------------------------------------ changes (keep the indexes with them)
    def put_pod(self, pod: PodInfo) -> None:
        key = pod.key                      # one string, shared by both indexes
        self.drop_pod(key)
        self.pods[key] = pod
        for ip in pod.addrs:
            self._by_ip[ip] = (*self._by_ip.get(ip, ()), key)

    def drop_pod(self, key: str) -> PodInfo | None:
        gone = self.pods.pop(key, None)
        if gone is not None:
            for ip in gone.addrs:
                rest = tuple(k for k in self._by_ip.get(ip, ()) if k != key)
                if rest:
                    self._by_ip[ip] = rest
                else:
                    self._by_ip.pop(ip, None)
        return gone

    def clear_pods(self) -> None:
        self.pods, self._by_ip = {}, {}

    def put_policy(self, policy: Policy) -> None:
        self.policies[policy.key] = policy
        self._by_ns = None

    def drop_policy(self, key: str) -> None:
        self.policies.pop(key, None)
        self._by_ns = None

    def clear_policies(self) -> None:
        self.policies, self._by_ns = {}, None

    def put_cluster_policy(self, policy: ClusterPolicy) -> None:
        self.cluster_policies[policy.key] = policy

    def drop_cluster_policy(self, key: str) -> None:
        self.cluster_policies.pop(key, None)

    def cluster_policies_for(self, pod: PodInfo, tier: str, direction: str) -> list[ClusterPolicy]:
        """The tier's ClusterNetworkPolicies whose subject holds this pod and which have rules in
        this direction ("in" | "eg"), in precedence order (priority, then name)."""
        if pod.host_network:
            return []
        ns = self.namespace_labels(pod.namespace)
        out = [cp for cp in self.cluster_policies.values() if cp.tier == tier
               and (cp.ingress if direction == "in" else cp.egress) and cp.subject.matches(pod.label_map, ns)]
        return sorted(out, key=lambda cp: cp.order)

    # ------------------------------------------------------------ local pods (CNI ADD/DEL)
    def claim(self, key: str, container: str, ips: tuple[IPAddr, ...]) -> None:
        self.unclaim(key)
        self.local[key] = LocalPod(container, ips)
        self._claims.update({str(ip): key for ip in ips})

    def unclaim(self, key: str) -> LocalPod | None:
        gone = self.local.pop(key, None)
        if gone is not None:
            for ip in gone.ips:
                if self._claims.get(str(ip)) == key:
                    del self._claims[str(ip)]
        return gone

    def claimant(self, ip: str) -> str | None:
        return self._claims.get(ip)

    # ------------------------------------------------------------ reading
    def pod_ips(self, pod: PodInfo) -> tuple[IPAddr, ...]:
        """Its addresses: what CNI ADD gave it on this node, else what the API reports — less any
        address CNI ADD has since given to another pod here (the API lags a reused address)."""
        mine = self.local.get(pod.key)
        if mine is not None:
            return mine.ips
        return tuple(ipaddress.ip_address(a) for a in self.pod_addrs(pod))

    def pod_addrs(self, pod: PodInfo) -> tuple[str, ...]:
        """pod_ips as text: for the API's addresses, the pod's own strings (every set holding the
        pod shares them: millions of elements in a big cluster, not millions of strings)."""
        if self.local:
            mine = self.local.get(pod.key)
            if mine is not None:
                return tuple(str(ip) for ip in mine.ips)
        if not self._claims:
            return pod.addrs
        key = pod.key
        return tuple(a for a in pod.addrs if self._claims.get(a, key) == key)

    def holders(self, ips: set[str]) -> dict[str, list[PodInfo]]:
        """For each address, the pods that hold it now (usually one), sorted by key."""
        out: dict[str, list[PodInfo]] = {}
        for ip in ips:
            keys = set(self._by_ip.get(ip, ()))
            claimant = self._claims.get(ip)
            if claimant is not None:
                keys.add(claimant)
            found = [self.pods[k] for k in sorted(keys) if k in self.pods]
            out[ip] = [p for p in found if ip in self.pod_addrs(p)]
        return out

    def is_local(self, pod: PodInfo) -> bool:
        return not pod.host_network and (pod.node == self.node or pod.key in self.local)

    def namespace_labels(self, ns: str) -> dict[str, str]:
        """A namespace's labels; an unseen one still has the label the API sets on every namespace."""
        return self.namespaces.get(ns) or {"kubernetes.io/metadata.name": ns}

    def policies_in(self, ns: str) -> list[Policy]:
        if self._by_ns is None:
            by_ns: dict[str, list[Policy]] = {}
            for p in self.policies.values():
                by_ns.setdefault(p.namespace, []).append(p)
            self._by_ns = by_ns
        return self._by_ns.get(ns, [])


@dataclass(frozen=True)
class LocalPod:
    container: str                   # CNI_CONTAINERID of the sandbox that holds the addresses
    ips: tuple[IPAddr, ...]
