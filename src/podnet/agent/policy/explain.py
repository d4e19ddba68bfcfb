"""`podnet policy show POD` and `podnet policy explain SRC DST PORT/PROTO`: the engine's view of
which policies select a pod and what they allow, and whether a connection is allowed — and if
not, which direction and which policies deny it.  The same predicates the compiler programs
(compiler.selects, compiler.peer_matches), applied to one connection."""
from __future__ import annotations

import ipaddress
from typing import Any

from .cluster import ClusterView, PodInfo
from .cnp import ClusterPolicy, CRule
from .compiler import cnp_peer_matches, peer_matches, selects
from .spec import PROTOCOLS, Peer, Policy, Port, Rule


def find_pod(view: ClusterView, what: str) -> PodInfo | None:
    """A pod by namespace/name or by one of its addresses."""
    if what in view.pods:
        return view.pods[what]
    try:
        ip = ipaddress.ip_address(what)
    except ValueError:
        return None
    return next((p for p in view.pods.values() if ip in view.pod_ips(p)), None)


def _peer_allows(view: ClusterView, peer: Peer, other: PodInfo | None, addr: Any, ns: str) -> bool:
    if peer.block is not None:
        return addr in peer.block.cidr and not any(addr in x for x in peer.block.excepts)
    return other is not None and peer_matches(peer, other, ns, view)


def _port_allows(ports: tuple[Port, ...], port: int, protocol: str, dst: PodInfo | None) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.protocol != protocol:
            continue
        if p.port is None:
            return True
        if isinstance(p.port, str):
            if dst is not None and dst.named_port(p.port, protocol) == port:
                return True
        elif p.port <= port <= (p.end_port or p.port):
            return True
    return False


def _rule_allows(view: ClusterView, r: Rule, other: PodInfo | None, addr: Any, ns: str, port: int, protocol: str,
                 dst: PodInfo | None) -> bool:
    peers_ok = r.peers is None or any(_peer_allows(view, pe, other, addr, ns) for pe in r.peers)
    return peers_ok and _port_allows(r.ports, port, protocol, dst)


def cnp_rule_matches(view: ClusterView, r: CRule, other: PodInfo | None, addr: Any, port: int, protocol: str) -> bool:
    """The same predicate the compiled rule is (fail-closed rules included)."""
    if r.match_none:
        return False
    if r.match_all:
        return True
    peer_ok = any((other is not None and pe.selects_pods and cnp_peer_matches(pe, other, view)) or
                  (addr is not None and any(addr in n for n in pe.networks)) for pe in r.peers)
    port_ok = not r.ports or any(p.protocol == protocol and p.lo <= port <= p.hi for p in r.ports)
    return peer_ok and port_ok and protocol in PROTOCOLS


def _tier(view: ClusterView, tier: str, target: PodInfo, other: PodInfo | None, addr: Any, port: int, protocol: str,
          ingress: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """(the deciding rule of this tier, or None; the tier's policies holding the pod)."""
    held = view.cluster_policies_for(target, tier, "in" if ingress else "eg")
    for cp in held:
        for r in cp.ingress if ingress else cp.egress:
            if cnp_rule_matches(view, r, other, addr, port, protocol):
                return {"tier": tier, "policy": cp.name, "priority": cp.priority, "rule": r.label,
                        "action": r.effective, **({"unsupported": r.unsupported} if r.unsupported else {})}, \
                    [c.name for c in held]
    return None, [c.name for c in held]


def direction(view: ClusterView, target: PodInfo, other: PodInfo | None, other_addr: Any, port: int, protocol: str,
              ingress: bool, dst: PodInfo | None) -> dict[str, Any]:
    """Whether this connection gets in (ingress) or out (egress) of `target`, and what decided:
    the Admin tier's first matching rule (Accept/Deny final; Pass: on), NetworkPolicy when it
    isolates the pod, else the Baseline tier's first matching rule, else the default."""
    decided, admin = _tier(view, "Admin", target, other, other_addr, port, protocol, ingress)
    passed = None
    if decided is not None:
        if decided["action"] != "Pass":
            return {"isolated": True, "allowed": decided["action"] == "Accept", "decided_by": decided,
                    "policies": [], "admin": admin}
        passed = decided
    pols = [p for p in view.policies_in(target.namespace) if selects(p, target)
            and (p.isolates_ingress if ingress else p.isolates_egress)]
    extra = {"passed_by": passed} if passed else {}
    if pols:
        allowing = [p.key for p in pols if any(_rule_allows(view, r, other, other_addr, p.namespace, port, protocol, dst)
                                               for r in (p.ingress if ingress else p.egress))]
        return {"isolated": True, "allowed": bool(allowing), "allowed_by": allowing, "policies": [p.key for p in pols],
                "decided_by": {"tier": "NetworkPolicy"}, **extra}
    decided, _ = _tier(view, "Baseline", target, other, other_addr, port, protocol, ingress)
    if decided is not None and decided["action"] != "Pass":
        return {"isolated": True, "allowed": decided["action"] == "Accept", "decided_by": decided, "policies": [],
                **extra}
    return {"isolated": False, "allowed": True, "policies": [], **extra}


def explain(view: ClusterView, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]:
    s, d = find_pod(view, src), find_pod(view, dst)
    s_addr = view.pod_ips(s)[0] if s is not None and view.pod_ips(s) else _ip(src)
    d_addr = view.pod_ips(d)[0] if d is not None and view.pod_ips(d) else _ip(dst)
    out: dict[str, Any] = {"src": s.key if s else src, "dst": d.key if d else dst, "port": port, "protocol": protocol}
    out["egress"] = direction(view, s, d, d_addr, port, protocol, False, d) if s is not None \
        else {"isolated": False, "allowed": True, "policies": [], "note": "source is not a known pod"}
    out["ingress"] = direction(view, d, s, s_addr, port, protocol, True, d) if d is not None \
        else {"isolated": False, "allowed": True, "policies": [], "note": "destination is not a known pod"}
    out["allowed"] = out["egress"]["allowed"] and out["ingress"]["allowed"]
    return out


def _ip(text: str) -> Any:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _describe_rule(view: ClusterView, p: Policy, r: Rule) -> dict[str, Any]:
    peers: Any = "any"
    if r.peers is not None:
        peers = []
        for pe in r.peers:
            if pe.block is not None:
                peers.append({"ipBlock": str(pe.block.cidr), "except": [str(x) for x in pe.block.excepts]})
            else:
                peers.append({"pods": sorted(q.key for q in view.pods.values() if peer_matches(pe, q, p.namespace, view))})
    ports = [{"protocol": x.protocol, "port": x.port, **({"endPort": x.end_port} if x.end_port else {})}
             for x in r.ports] or "any"
    return {"peers": peers, "ports": ports}


def _describe_cnp_rule(view: ClusterView, r: CRule) -> dict[str, Any]:
    peers: list[dict[str, Any]] = []
    for pe in r.peers:
        if pe.selects_pods:
            peers.append({"pods": sorted(q.key for q in view.pods.values() if cnp_peer_matches(pe, q, view))})
        if pe.networks:
            peers.append({"networks": [str(n) for n in pe.networks]})
    ports = [{"protocol": p.protocol, "port": p.lo if p.lo == p.hi else None,
              **({"range": f"{p.lo}-{p.hi}"} if p.lo != p.hi and (p.lo, p.hi) != (0, 65535) else {})}
             for p in r.ports] or "any"
    return {"rule": r.label, "action": r.effective, "peers": peers, "ports": ports,
            **({"unsupported": r.unsupported} if r.unsupported else {})}


def _describe_cnp(view: ClusterView, cp: ClusterPolicy, ingress: bool) -> dict[str, Any]:
    return {"policy": cp.name, "tier": cp.tier, "priority": cp.priority,
            "rules": [_describe_cnp_rule(view, r) for r in (cp.ingress if ingress else cp.egress)]}


def show(view: ClusterView, what: str) -> dict[str, Any]:
    pod = find_pod(view, what)
    if pod is None:
        return {"error": f"no pod {what!r} known to this node's agent"}
    out: dict[str, Any] = {"pod": pod.key, "ips": [str(i) for i in view.pod_ips(pod)], "local": view.is_local(pod)}
    for d, ingress in (("ingress", True), ("egress", False)):
        pols = [p for p in view.policies_in(pod.namespace) if selects(p, pod)
                and (p.isolates_ingress if ingress else p.isolates_egress)]
        out[d] = {"isolated": bool(pols), "policies": [
            {"policy": p.key, "rules": [_describe_rule(view, p, r) for r in (p.ingress if ingress else p.egress)]}
            for p in pols]}
        for tier in ("Admin", "Baseline"):
            held = view.cluster_policies_for(pod, tier, "in" if ingress else "eg")
            if held:
                out[d][tier.lower()] = [_describe_cnp(view, cp, ingress) for cp in held]
                if tier == "Baseline" and pols:
                    out[d]["baseline_note"] = "not consulted: NetworkPolicy isolates this pod in this direction"
    return out
