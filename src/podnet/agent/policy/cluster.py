"""What the policy engine knows about the cluster: every pod (labels, addresses, named container
ports, node), every namespace's labels, every NetworkPolicy — fed by the API's watches and, for
this node's pods, by CNI ADD itself (a pod's addresses are known here before kubelet reports them)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .cnp import ClusterPolicy
from .spec import Policy

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    ips: tuple[IPAddr, ...]
    node: str = ""
    host_network: bool = False
    ports: tuple[tuple[str, str, int], ...] = ()      # (name, protocol, number) of its containers' ports

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pn, pr, n in self.ports if pn == name and pr == protocol), None)

    @staticmethod
    def from_api(obj: dict[str, Any]) -> PodInfo:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        ips = [a.get("ip") for a in status.get("podIPs") or [] if a.get("ip")] or \
            ([status["podIP"]] if status.get("podIP") else [])
        ports = [(str(p["name"]), str(p.get("protocol") or "TCP"), int(p["containerPort"]))
                 for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("name")]
        return PodInfo(str(meta.get("namespace")), str(meta.get("name")),
                       tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
                       tuple(ipaddress.ip_address(ip) for ip in ips), str(spec.get("nodeName") or ""),
                       bool(spec.get("hostNetwork")), tuple(sorted(ports)))


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
    _by_ip: dict[str, set[str]] = field(default_factory=dict)  # address → keys of pods the API gives it
    _by_ns: dict[str, list[Policy]] | None = None              # namespace → its policies (built on demand)

    # ------------------------------------------------------------ changes (keep the indexes with them)
    def put_pod(self, pod: PodInfo) -> None:
        self.drop_pod(pod.key)
        self.pods[pod.key] = pod
        for ip in pod.ips:
            self._by_ip.setdefault(str(ip), set()).add(pod.key)

    def drop_pod(self, key: str) -> PodInfo | None:
        gone = self.pods.pop(key, None)
        if gone is not None:
            for ip in gone.ips:
                keys = self._by_ip.get(str(ip))
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_ip[str(ip)]
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
        if not self._claims:
            return pod.ips
        return tuple(ip for ip in pod.ips if self._claims.get(str(ip), pod.key) == pod.key)

    def holders(self, ips: set[str]) -> dict[str, list[PodInfo]]:
        """For each address, the pods that hold it now (usually one), sorted by key."""
        out: dict[str, list[PodInfo]] = {}
        for ip in ips:
            keys = set(self._by_ip.get(ip, ()))
            claimant = self._claims.get(ip)
            if claimant is not None:
                keys.add(claimant)
            found = [self.pods[k] for k in sorted(keys) if k in self.pods]
            out[ip] = [p for p in found if any(str(a) == ip for a in self.pod_ips(p))]
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
