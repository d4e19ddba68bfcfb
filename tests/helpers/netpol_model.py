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
    def __init__(self, pods: list[MPod], namespaces: dict[str, dict[str, str]], policies: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.namespaces = namespaces
        self.policies = policies

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

    def _direction_allows(self, pod: MPod, kind: str, other: MPod | None, other_ip: str, port: int, proto: str,
                          dst: MPod | None) -> bool:
        pols = self._selecting(pod, kind)
        if not pols:
            return True
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
