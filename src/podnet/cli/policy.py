"""`podnet policy …`: what the node's agent enforces for NetworkPolicy, as it computes it now.

  show POD                       the policies that select the pod (namespace/name or an address),
                                 per direction, with their peers resolved to pods and their ports
  explain SRC DST PORT[/PROTO]   whether a new connection is allowed; if not, which direction
                                 denies it and which policies isolate that pod
Both ask the agent on its socket (GET /policy/show, /policy/explain); the agent must run with
network-policy on.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from ..wire import DEFAULT_SOCKET


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("policy", help="NetworkPolicy as this node's agent enforces it (show, explain)")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help="the agent's socket")
    p.add_argument("--json", action="store_true")
    pp = p.add_subparsers(dest="policy_cmd", required=True)
    s = pp.add_parser("show", help="the policies selecting a pod and what they allow")
    s.add_argument("pod", help="namespace/name or an address")
    e = pp.add_parser("explain", help="is SRC → DST PORT/PROTO allowed, and if not, why")
    e.add_argument("src", help="namespace/name or an address")
    e.add_argument("dst", help="namespace/name or an address")
    e.add_argument("port", help="PORT or PORT/PROTO (TCP, UDP, SCTP; default TCP)")
    p.set_defaults(fn=run)


def _ask(sock: str, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    from ..wire import http_get_unix
    try:
        status, body = http_get_unix(sock, f"{path}?{urllib.parse.urlencode(query)}", timeout=10)
    except OSError as e:
        return 0, {"error": f"cannot reach the agent at {sock}: {e.strerror or e}"}
    try:
        return status, dict(json.loads(body))
    except ValueError:
        return status, {"error": body.decode(errors="replace").strip()}


def run(a: argparse.Namespace) -> int:
    if a.policy_cmd == "show":
        status, doc = _ask(a.socket, "/policy/show", {"pod": a.pod})
    else:
        port, _, proto = a.port.partition("/")
        if not port.isdigit():
            print(f"podnet policy explain: port {a.port!r}: give PORT or PORT/PROTO", file=sys.stderr)
            return 2
        status, doc = _ask(a.socket, "/policy/explain", {"src": a.src, "dst": a.dst, "port": port,
                                                         "protocol": (proto or "TCP").upper()})
    if status == 404 and "error" not in doc:
        doc = {"error": "the agent does not enforce NetworkPolicy (start it with network-policy: true)"}
    if status != 200 or "error" in doc:
        print(f"podnet policy: {doc.get('error', f'the agent answered {status}')}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(doc, indent=2))
    elif a.policy_cmd == "show":
        print(render_show(doc))
    else:
        print(render_explain(doc))
        return 0 if doc["allowed"] else 3
    return 0


def _peers(peers: Any) -> str:
    if peers == "any":
        return "any peer"
    parts = []
    for p in peers:
        if "ipBlock" in p:
            parts.append(f"ipBlock {p['ipBlock']}" + (f" except {', '.join(p['except'])}" if p["except"] else ""))
        else:
            parts.append("pods [" + " ".join(p["pods"]) + "]" if p["pods"] else "pods [none now]")
    return " or ".join(parts)


def _ports(ports: Any) -> str:
    if ports == "any":
        return "any port"
    return ", ".join(f"{p['protocol']}/{p['port'] if p['port'] is not None else '*'}"
                     + (f"-{p['endPort']}" if p.get("endPort") else "") for p in ports)


def _cnp_lines(d: str, part: dict[str, Any]) -> list[str]:
    lines = []
    for tier in ("admin", "baseline"):
        for p in part.get(tier, []):
            lines.append(f"{d}: ClusterNetworkPolicy {p['policy']} ({p['tier']} tier, priority {p['priority']})"
                         + (f" — {part['baseline_note']}" if tier == "baseline" and part.get("baseline_note") else ""))
            for r in p["rules"]:
                peers = " or ".join(f"pods [{' '.join(x['pods']) or 'none now'}]" if "pods" in x
                                    else f"networks {', '.join(x['networks'])}" for x in r["peers"]) or "(unsupported peer)"
                ports = "any protocol" if r["ports"] == "any" else ", ".join(
                    f"{x['protocol']}/{x.get('range') or x['port'] or '*'}" for x in r["ports"])
                lines.append(f"  rule {r['rule']}: {r['action']} {'from' if d == 'ingress' else 'to'} {peers} on {ports}"
                             + (f" [{r['unsupported']}]" if r.get("unsupported") else ""))
    return lines


def render_show(doc: dict[str, Any]) -> str:
    lines = [f"pod {doc['pod']} ({', '.join(doc['ips']) or 'no address'}"
             f"{', on this node' if doc['local'] else ''})"]
    for d in ("ingress", "egress"):
        part = doc[d]
        lines += _cnp_lines(d, part)
        if not part["isolated"]:
            lines.append(f"{d}: not isolated (everything allowed)")
            continue
        lines.append(f"{d}: isolated by {', '.join(p['policy'] for p in part['policies'])}")
        for p in part["policies"]:
            if not p["rules"]:
                lines.append(f"  {p['policy']}: allows nothing")
            for r in p["rules"]:
                lines.append(f"  {p['policy']}: {'from' if d == 'ingress' else 'to'} {_peers(r['peers'])} "
                             f"on {_ports(r['ports'])}")
    return "\n".join(lines)


def render_explain(doc: dict[str, Any]) -> str:
    verdict = "ALLOWED" if doc["allowed"] else "DENIED"
    lines = [f"{doc['src']} → {doc['dst']} {doc['port']}/{doc['protocol']}: {verdict}"]
    for d, who in (("egress", doc["src"]), ("ingress", doc["dst"])):
        part = doc[d]
        by = part.get("decided_by") or {}
        passed = part.get("passed_by")
        via = (f" (after ClusterNetworkPolicy {passed['policy']} rule {passed['rule']}: Pass)" if passed else "")
        if part.get("note"):
            lines.append(f"  {d} ({who}): {part['note']}")
        elif by.get("tier") in ("Admin", "Baseline"):
            word = "allowed" if part["allowed"] else "DENIED"
            lines.append(f"  {d} ({who}): {word} by ClusterNetworkPolicy {by['policy']} ({by['tier']} tier, "
                         f"priority {by['priority']}) rule {by['rule']}: {by['action']}{via}"
                         + (f" [fail closed: {by['unsupported']}]" if by.get("unsupported") else ""))
        elif not part["isolated"]:
            lines.append(f"  {d} ({who}): not isolated{via}")
        elif part["allowed"]:
            lines.append(f"  {d} ({who}): allowed by NetworkPolicy {', '.join(part['allowed_by'])}{via}")
        else:
            lines.append(f"  {d} ({who}): DENIED — isolated by NetworkPolicy {', '.join(part['policies'])}, "
                         f"and no rule of theirs allows it{via}")
    return "\n".join(lines)
