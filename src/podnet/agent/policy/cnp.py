"""ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1, network-policy-api v0.3.1) as typed
values: the cluster administrator's tiers around NetworkPolicy.

  Admin tier     by priority (0 first): a rule's Accept and Deny are final for that direction,
                 Pass hands the connection to the NetworkPolicy tier
  NetworkPolicy  a pod selected in a direction: its policies decide (allow-list, then drop)
  Baseline tier  only for a pod no NetworkPolicy selects in that direction: by priority, Accept/Deny
                 final (Pass: to the default)
  default        allow

Within a policy, rules apply in the order written; between policies of one tier, lower priority
first.  Two policies of one tier with the SAME priority that could match one connection: the API
leaves the order undefined ("the implementation can apply any of the matching policies");
podnet orders them by name — stable, and said here, not invented silently.

A peer or protocol podnet cannot enforce (an experimental `nodes` or `domainNames` peer, a
`destinationNamedPort`, a field this version does not know) makes its rule "fail closed" as the
API says: an Accept rule matches nothing, a Deny or Pass rule matches everything.  SCTP is matched
by protocol number like TCP and UDP; on a kernel without SCTP there is no SCTP traffic to match
(the engine announces it).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from .spec import PROTOCOLS, IPNet, Selector

TIERS = ("Admin", "Baseline")
ACTIONS = ("Accept", "Deny", "Pass")
KNOWN_PEER_KEYS = {"namespaces", "pods", "networks"}        # what podnet enforces (standard channel)


@dataclass(frozen=True)
class CPeer:
    """namespaces: every pod of matching namespaces; pods: pods matching in matching namespaces;
    networks: addresses in CIDRs (egress only)."""
    namespaces: Selector | None = None
    pods: Selector | None = None                   # with namespaces: the NamespacedPod's two selectors
    networks: tuple[IPNet, ...] = ()

    @property
    def selects_pods(self) -> bool:
        return self.namespaces is not None


@dataclass(frozen=True)
class CPort:
    protocol: str                 # TCP, UDP, SCTP
    lo: int = 0
    hi: int = 65535


@dataclass(frozen=True)
class CRule:
    index: int
    name: str
    action: str                                   # Accept | Deny | Pass
    peers: tuple[CPeer, ...]
    ports: tuple[CPort, ...]                      # () = any protocol, any port
    match_all: bool = False                       # fail closed: a Deny/Pass rule with a peer podnet cannot enforce
    match_none: bool = False                      # fail closed: an Accept rule with one
    unsupported: str = ""                         # why (shown by `podnet policy show`)

    @property
    def label(self) -> str:
        return self.name or f"#{self.index}"

    @property
    def effective(self) -> str:
        """The action enforced: a Pass rule podnet cannot enforce fails closed as a Deny (the API's
        "treat the rule as a 'Deny all' rule")."""
        return "Deny" if self.match_all else self.action


@dataclass(frozen=True)
class Subject:
    namespaces: Selector
    pods: Selector | None = None                  # None: every pod of the namespaces

    def matches(self, pod_labels: dict[str, str], ns_labels: dict[str, str]) -> bool:
        return self.namespaces.matches(ns_labels) and (self.pods is None or self.pods.matches(pod_labels))


@dataclass(frozen=True)
class ClusterPolicy:
    name: str
    tier: str
    priority: int
    subject: Subject
    ingress: tuple[CRule, ...]
    egress: tuple[CRule, ...]

    @property
    def key(self) -> str:
        return f"CNP:{self.name}"          # never a NetworkPolicy's namespace/name (no ':' in a namespace)

    @property
    def order(self) -> tuple[int, str]:
        """Precedence within its tier: priority, then (equal priorities) the name."""
        return (self.priority, self.name)

    def protocols(self) -> set[str]:
        return {p.protocol for r in (*self.ingress, *self.egress) for p in r.ports}

    @staticmethod
    def parse(obj: dict[str, Any]) -> ClusterPolicy:
        """From the API's JSON; ValueError naming the field for what the CRD's validation should
        have refused (an object stored before it, or from a CRD of another version)."""
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        tier = str(spec.get("tier") or "")
        if tier not in TIERS:
            raise ValueError(f"spec.tier {tier!r} is not Admin or Baseline")
        priority = spec.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
            raise ValueError(f"spec.priority {priority!r} is not 0–1000")
        return ClusterPolicy(str(meta.get("name")), tier, priority, _subject(spec.get("subject") or {}),
                             tuple(_rule(r, i, "from") for i, r in enumerate(spec.get("ingress") or [])),
                             tuple(_rule(r, i, "to") for i, r in enumerate(spec.get("egress") or [])))


def _subject(raw: dict[str, Any]) -> Subject:
    if raw.get("namespaces") is not None:
        return Subject(Selector.parse(raw["namespaces"]))
    if raw.get("pods") is not None:
        return Subject(Selector.parse(raw["pods"].get("namespaceSelector")), Selector.parse(raw["pods"].get("podSelector")))
    raise ValueError("spec.subject: neither namespaces nor pods")


def _rule(raw: dict[str, Any], index: int, peers_key: str) -> CRule:
    action = str(raw.get("action") or "")
    if action not in ACTIONS:
        raise ValueError(f"rule {index}: action {action!r} is not Accept, Deny or Pass")
    name = str(raw.get("name") or "")
    peers, why = [], []
    for p in raw.get(peers_key) or []:
        peer, unsupported = _peer(p, peers_key)
        if peer is not None:
            peers.append(peer)
        if unsupported:
            why.append(unsupported)
    ports, port_why = _ports(raw.get("protocols") or [])
    why += port_why
    if not raw.get(peers_key):
        why.append(f"no `{peers_key}` peers")
    unsupported = "; ".join(why)
    return CRule(index, name, action, tuple(peers), tuple(ports),
                 match_all=bool(unsupported) and action != "Accept", match_none=bool(unsupported) and action == "Accept",
                 unsupported=unsupported)


def _peer(raw: dict[str, Any], peers_key: str) -> tuple[CPeer | None, str]:
    keys = {k for k, v in raw.items() if v is not None}
    unknown = keys - KNOWN_PEER_KEYS
    if unknown or not keys:
        return None, f"peer {sorted(unknown) or '(empty)'} not enforced by podnet"
    if "namespaces" in keys:
        return CPeer(namespaces=Selector.parse(raw["namespaces"])), ""
    if "pods" in keys:
        pods = raw["pods"]
        return CPeer(namespaces=Selector.parse(pods.get("namespaceSelector")), pods=Selector.parse(pods.get("podSelector"))), ""
    if peers_key != "to":
        return None, "networks peers are egress only"
    return CPeer(networks=tuple(ipaddress.ip_network(str(c), strict=False) for c in raw["networks"])), ""


def _ports(raw: list[dict[str, Any]]) -> tuple[list[CPort], list[str]]:
    out, why = [], []
    for p in raw:
        keys = {k for k, v in p.items() if v is not None}
        proto = next((k for k in ("tcp", "udp", "sctp") if k in keys), "")
        if not proto:
            why.append(f"protocol {sorted(keys)} not enforced by podnet")
            continue
        dest = (p.get(proto) or {}).get("destinationPort")
        if dest is None:
            out.append(CPort(proto.upper()))
        elif dest.get("range"):
            lo, hi = int(dest["range"]["start"]), int(dest["range"]["end"])
            out.append(CPort(proto.upper(), lo, hi))
        else:
            n = int(dest.get("number") or 0)
            out.append(CPort(proto.upper(), n, n))
    assert all(p.protocol in PROTOCOLS for p in out)
    return out, why
