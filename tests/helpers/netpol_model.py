"""A reference model of Kubernetes NetworkPolicy (networking.k8s.io/v1), written from the API
documentation and independent of podnet's compiler: it reads the policies' JSON as a user writes
it and answers "is this connection allowed?".  The truth tables of the policy tests come from here.

Semantics (https://kubernetes.io/docs/concepts/services-networking/network-policies/):
- a pod is isolated for ingress (egress) iff a policy in its namespace selects it and lists
  Ingress (Egress) in policyTypes; policyTypes defaults to [Ingress] + [Egress if egress rules];
- a connection is allowed iff the source's egress allows it AND the destination's ingress does;
  a non-isolated direction allows everything; an isolated one allows what ANY selecting policy's
  ANY rule allows;
- a rule allows when one of its peers matches (no `from`/`to`: any peer) and one of its ports
  matches (no `ports`: any port);
- a peer: podSelector alone = pods of the policy's namespace; namespaceSelector alone = every pod of
  the matching namespaces; both = pods matching podSelector in matching namespaces; ipBlock = the
  address in cidr and not in any except (pod addresses included);
- a port: protocol (default TCP), port number or the name of a container port of the DESTINATION
  pod (no such name on it: no match), endPort for a range; no port = every port of the protocol.

ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1, network-policy-api v0.3.1: the field docs of
apis/v1beta1/clusternetworkpolicy_types.go), per direction of each end:
- the Admin tier first: the policies whose subject holds the pod (subject.namespaces: the pod's
  namespace's labels; subject.pods: namespaceSelector AND podSelector), lower priority first; within
  a policy its rules in order; the first rule that matches decides: Accept allows, Deny denies, Pass
  leaves the Admin tier (no further Admin rule) for the next;
- then NetworkPolicy: a pod it isolates in that direction is decided by it (above), always;
- then, only for a pod no NetworkPolicy isolates in that direction, the Baseline tier the same way
  (Pass: to the default);
- then the default: allow.
- a rule matches when one of its peers matches (namespaces: the other pod's namespace labels;
  pods: namespaceSelector AND podSelector; networks, egress only: the address in a CIDR — a
  host-network or unknown peer is matched by networks only) and, if it has protocols, one of them
  does (tcp/udp/sctp; no destinationPort = every port; number; range start–end inclusive).
- two policies of one tier with the same priority: undefined by the API — the model takes them by
  name, as podnet says it does (the generated tests give distinct priorities except where they test
  this on purpose).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MPod:
    namespace: str
    name: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)   # name → (protocol, number)


def label_selector_matches(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if sel is None:
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], set(e.get("values") or [])
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def policy_types(policy: dict[str, Any]) -> set[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


class Model:
    def __init__(self, pods: list[MPod], namespaces: dict[str, dict[str, str]], policies: list[dict[str, Any]],
                 cluster_policies: list[dict[str, Any]] | None = None) -> None:
        self.pods = pods
        self.namespaces = namespaces
        self.policies = policies
        self.cluster_policies = cluster_policies or []

    def ns_labels(self, ns: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": ns, **self.namespaces.get(ns, {})}

    def _selecting(self, pod: MPod, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.policies if p["metadata"]["namespace"] == pod.namespace
                and label_selector_matches(p["spec"].get("podSelector") or {}, pod.labels)
                and kind in policy_types(p)]

    def _peer_matches(self, peer: dict[str, Any], other: MPod | None, other_ip: str, policy_ns: str) -> bool:
        if peer.get("ipBlock"):
            ip = ipaddress.ip_address(other_ip)
            blk = peer["ipBlock"]
            if ip not in ipaddress.ip_network(blk["cidr"], strict=False):
                return False
            return not any(ip in ipaddress.ip_network(x, strict=False) for x in blk.get("except") or [])
        if other is None:
            return False
        pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
        if ns_sel is None:
            return other.namespace == policy_ns and label_selector_matches(pod_sel or {}, other.labels)
        return label_selector_matches(ns_sel, self.ns_labels(other.namespace)) and \
            label_selector_matches(pod_sel, other.labels)

    @staticmethod
    def _port_matches(ports: list[dict[str, Any]] | None, port: int, proto: str, dst: MPod | None) -> bool:
        if not ports:
            return True
        for p in ports:
            if (p.get("protocol") or "TCP") != proto:
                continue
            want = p.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                if dst is not None and want in dst.ports and dst.ports[want] == (proto, port):
                    return True
                continue
            if want <= port <= (p.get("endPort") or want):
                return True
        return False

    # ------------------------------------------------------------ ClusterNetworkPolicy
    def _cnp_subject_holds(self, cnp: dict[str, Any], pod: MPod) -> bool:
        subject = cnp["spec"]["subject"]
        if subject.get("namespaces") is not None:
            return label_selector_matches(subject["namespaces"], self.ns_labels(pod.namespace))
        pods = subject["pods"]
        return label_selector_matches(pods.get("namespaceSelector") or {}, self.ns_labels(pod.namespace)) and \
            label_selector_matches(pods.get("podSelector") or {}, pod.labels)

    def _cnp_peer_matches(self, peer: dict[str, Any], other: MPod | None, other_ip: str) -> bool:
        if peer.get("networks") is not None:
            ip = ipaddress.ip_address(other_ip)
            return any(ip in ipaddress.ip_network(c, strict=False) for c in peer["networks"])
        if other is None:
            return False
        if peer.get("namespaces") is not None:
            return label_selector_matches(peer["namespaces"], self.ns_labels(other.namespace))
        pods = peer["pods"]
        return label_selector_matches(pods.get("namespaceSelector") or {}, self.ns_labels(other.namespace)) and \
            label_selector_matches(pods.get("podSelector") or {}, other.labels)

    @staticmethod
    def _cnp_protocol_matches(protocols: list[dict[str, Any]] | None, port: int, proto: str) -> bool:
        if not protocols:
            return True
        for p in protocols:
            spec = p.get(proto.lower())
            if spec is None:
                continue
            dest = spec.get("destinationPort")
            if dest is None:
                return True
            if dest.get("range"):
                if dest["range"]["start"] <= port <= dest["range"]["end"]:
                    return True
            elif dest.get("number") == port:
                return True
        return False

    def _tier_decides(self, tier: str, pod: MPod, kind: str, other: MPod | None, other_ip: str, port: int,
                      proto: str) -> bool | None:
        """True/False: the tier decided; None: no rule matched, or a Pass."""
        key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        held = [c for c in self.cluster_policies if c["spec"]["tier"] == tier and self._cnp_subject_holds(c, pod)]
        for cnp in sorted(held, key=lambda c: (c["spec"]["priority"], c["metadata"]["name"])):
            for rule in cnp["spec"].get(key) or []:
                if any(self._cnp_peer_matches(pe, other, other_ip) for pe in rule[peers_key]) and \
                        self._cnp_protocol_matches(rule.get("protocols"), port, proto):
                    if rule["action"] == "Pass":
                        return None
                    return rule["action"] == "Accept"
        return None

    def _direction_allows(self, pod: MPod, kind: str, other: MPod | None, other_ip: str, port: int, proto: str,
                          dst: MPod | None) -> bool:
        admin = self._tier_decides("Admin", pod, kind, other, other_ip, port, proto)
        if admin is not None:
            return admin
        pols = self._selecting(pod, kind)
        if not pols:
            baseline = self._tier_decides("Baseline", pod, kind, other, other_ip, port, proto)
            return True if baseline is None else baseline
        key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        for p in pols:
            for rule in p["spec"].get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(self._peer_matches(pe, other, other_ip, p["metadata"]["namespace"])
                                           for pe in peers)
                if peer_ok and self._port_matches(rule.get("ports"), port, proto, dst):
                    return True
        return False

    def allowed(self, src: MPod, dst: MPod, port: int, proto: str) -> bool:
        """Pod to pod (by its address), on (port, proto)."""
        return self._direction_allows(src, "Egress", dst, dst.ip, port, proto, dst) and \
            self._direction_allows(dst, "Ingress", src, src.ip, port, proto, dst)

    def matrix(self, port: int, proto: str) -> dict[tuple[str, str], bool]:
        return {(f"{s.namespace}/{s.name}", f"{d.namespace}/{d.name}"): self.allowed(s, d, port, proto)
                for s in self.pods for d in self.pods if s is not d}
