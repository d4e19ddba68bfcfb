"""`podnet policy show POD` and `podnet policy explain SRC DST PORT/PROTO`: the engine's view of
which policies select a pod and what they allow, and whether a connection is allowed — and if
not, which direction and which policies deny it.  The same predicates the compiler programs
(compiler.selects, compiler.peer_matches), applied to one connection."""
from __future__ import annotations

import ipaddress
from typing import Any

from .cluster import ClusterView, PodInfo
from .compiler import peer_matches, selects
from .spec import Peer, Policy, Port, Rule


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


def direction(view: ClusterView, target: PodInfo, other: PodInfo | None, other_addr: Any, port: int, protocol: str,
              ingress: bool, dst: PodInfo | None) -> dict[str, Any]:
    """Whether `target`'s policies let this connection in (ingress) or out (egress)."""
    pols = [p for p in view.policies_in(target.namespace) if selects(p, target)
            and (p.isolates_ingress if ingress else p.isolates_egress)]
    if not pols:
        return {"isolated": False, "allowed": True, "policies": []}
    allowing = [p.key for p in pols if any(_rule_allows(view, r, other, other_addr, p.namespace, port, protocol, dst)
                                           for r in (p.ingress if ingress else p.egress))]
    return {"isolated": True, "allowed": bool(allowing), "allowed_by": allowing,
            "policies": [p.key for p in pols]}


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
    return out
