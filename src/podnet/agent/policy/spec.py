"""NetworkPolicy objects as typed values: parsed once from the API's JSON, validated, with the
API's defaults applied (policyTypes), so the compiler never looks at raw dictionaries."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                       # In, NotIn, Exists, DoesNotExist
    values: frozenset[str]


@dataclass(frozen=True)
class Selector:
    """A label selector: every matchLabels pair and every requirement must hold; empty = all."""
    labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for r in self.requirements:
            present = r.key in labels
            if r.op == "In" and not (present and labels[r.key] in r.values):
                return False
            if r.op == "NotIn" and present and labels[r.key] in r.values:
                return False
            if r.op == "Exists" and not present:
                return False
            if r.op == "DoesNotExist" and present:
                return False
        return True

    @staticmethod
    def parse(raw: Any) -> Selector:
        raw = raw or {}
        labels = tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items()))
        reqs = []
        for e in raw.get("matchExpressions") or []:
            op = str(e.get("operator"))
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ValueError(f"label selector operator {op!r}")
            reqs.append(Requirement(str(e.get("key")), op, frozenset(str(v) for v in e.get("values") or [])))
        return Selector(labels, tuple(sorted(reqs, key=lambda r: (r.key, r.op, sorted(r.values)))))


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNet
    excepts: tuple[IPNet, ...] = ()


@dataclass(frozen=True)
class Peer:
    """One entry of `from`/`to`: pods (podSelector and/or namespaceSelector: both = AND) or an ipBlock.
    pod None with namespaces set = every pod of those namespaces; namespaces None = the policy's own."""
    pods: Selector | None = None
    namespaces: Selector | None = None
    block: IPBlock | None = None


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"          # TCP, UDP, SCTP
    port: int | str | None = None  # a number, a container port's name, or None (every port)
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """Allowed peers × ports: peers None (absent/empty) = every peer; ports () = every port."""
    peers: tuple[Peer, ...] | None
    ports: tuple[Port, ...]


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    isolates_ingress: bool
    isolates_egress: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def protocols(self) -> set[str]:
        return {p.protocol for r in (*self.ingress, *self.egress) for p in r.ports}

    @staticmethod
    def parse(obj: dict[str, Any]) -> Policy:
        """From the API's JSON (networking.k8s.io/v1 NetworkPolicy)."""
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        ingress = tuple(_rule(r, "from") for r in spec.get("ingress") or [])
        egress = tuple(_rule(r, "to") for r in spec.get("egress") or [])
        types = spec.get("policyTypes")
        if not types:            # the API server defaults it; a stored object may predate that
            types = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        return Policy(str(meta.get("namespace") or "default"), str(meta.get("name")), Selector.parse(spec.get("podSelector")),
                      ingress, egress, "Ingress" in types, "Egress" in types)


def _rule(raw: dict[str, Any], peers_key: str) -> Rule:
    peers_raw = raw.get(peers_key)
    peers = None if not peers_raw else tuple(_peer(p) for p in peers_raw)
    return Rule(peers, tuple(_port(p) for p in raw.get("ports") or []))


def _peer(raw: dict[str, Any]) -> Peer:
    if raw.get("ipBlock"):
        b = raw["ipBlock"]
        return Peer(block=IPBlock(ipaddress.ip_network(str(b["cidr"]), strict=False),
                                  tuple(ipaddress.ip_network(str(x), strict=False) for x in b.get("except") or [])))
    pods = Selector.parse(raw["podSelector"]) if raw.get("podSelector") is not None else None
    namespaces = Selector.parse(raw["namespaceSelector"]) if raw.get("namespaceSelector") is not None else None
    if pods is None and namespaces is None:
        pods = Selector()
    return Peer(pods, namespaces)


def _port(raw: dict[str, Any]) -> Port:
    proto = str(raw.get("protocol") or "TCP").upper()
    if proto not in PROTOCOLS:
        raise ValueError(f"protocol {proto!r}")
    port = raw.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    end = raw.get("endPort")
    return Port(proto, port if port not in ("", None) else None, int(end) if end is not None else None)
