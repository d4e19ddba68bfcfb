"""`podnet trace SRC DST`: the path a packet takes from SRC to DST, hop by hop, and the exact place
it dies.  Exit 0 when the path works, 1 when it is broken (the first broken hop and what to
check), 2 when an end cannot be resolved.

SRC and DST: an address, `node:NAME`, a pod's network namespace name (as in /run/netns: the
lab's pods), a container ID (its cluster-IPAM allocation), or `namespace/name` with
`--kubeconfig`.  The nodes come from the etcd datastore (`--etcd`) or the Kubernetes API;
each node's agent answers for its own hops on its trace endpoint
(GET /trace/hop on the node's address, `--trace-port`), so the CLI on any node follows the path
across nodes.  A node whose agent does not answer ends the trace there, saying so and what was
seen up to it.  The trace only looks: routes, neighbour and VXLAN entries, tables, policies.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from .common import connect, etcd_command, use_lab

MAX_NODES = 4          # origin, at most two nodes between (a hostPort bounce), the destination


@dataclass
class End:
    ip: Any
    node: str          # "" when outside the cluster's nodes
    label: str
    netns: str = ""    # the pod's netns path, when this machine has it (--probe sends from there)


def add_parsers(sub: Any) -> None:
    p = etcd_command(sub, "trace", "the path from SRC to DST hop by hop, and where it breaks")
    p.add_argument("src", help="address, node:NAME, a pod's netns name, or a container ID")
    p.add_argument("dst", help="address, node:NAME, a pod's netns name, or a container ID")
    p.add_argument("--port", type=int, default=0, help="destination port (policy verdicts)")
    p.add_argument("--proto", default="tcp", choices=("tcp", "udp", "icmp"))
    p.add_argument("--hostport", action="store_true",
                   help="DST's --port is a hostPort: the path must go through its DNAT to a pod")
    p.add_argument("--kubeconfig", default="", help="the Kubernetes datastore: nodes, podCIDRs and pods "
                   "(namespace/name) from the API instead of etcd")
    p.add_argument("--probe", action="store_true",
                   help="also send a real packet from SRC (a pod netns on this node; run where it is) and "
                        "follow it through this node's nftables (meta nftrace), then remove the tracing")
    p.add_argument("--trace-port", type=int, default=9473, help="the agents' trace endpoint port")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each node's agent")
    p.set_defaults(fn=run)


def _netns_address(name: str) -> Any | None:
    """A pod netns's address, given its name under /run/netns or its path (None: no such netns)."""
    from ..net.addr import netns_address
    path = name if name.startswith("/") else f"/run/netns/{name}"
    return netns_address(path) if os.path.exists(path) else None


def _owner_of(ip: Any, owners: dict[Any, str]) -> str:
    """The node whose pod CIDR holds `ip` ("" when none does)."""
    return next((n for cidr, n in owners.items() if ip.version == cidr.version and ip in cidr), "")


def resolve(what: str, nodes: dict[str, dict[str, str]], owners: dict[Any, str], handles: dict[str, Any],
            pods: dict[str, str] | None = None) -> End:
    """An end of the trace: its address, the node it lives on, how to call it."""
    if pods and what in pods:                              # namespace/name (Kubernetes datastore)
        what_ip = ipaddress.ip_address(pods[what])
        return End(what_ip, _owner_of(what_ip, owners), f"pod {what}")
    if what.startswith("node:"):
        name = what[5:]
        if name not in nodes:
            raise LookupError(f"{what}: no live node {name!r} (`podnet node ls`)")
        return End(ipaddress.ip_address(nodes[name]["addr"]), name, f"node {name}")
    ip: Any
    netns_path = ""
    try:
        ip = ipaddress.ip_address(what)
        label = str(ip)
    except ValueError:
        ip = _netns_address(what)
        label = f"pod {what}"
        netns_path = (what if what.startswith("/") else f"/run/netns/{what}") if ip is not None else ""
        if ip is None:
            held = [v for k, v in handles.items() if what in k.split("/")]
            if not held or not held[0].get("ips"):
                raise LookupError(f"{what}: not an address, node:NAME, pod netns or container ID") from None
            ip = ipaddress.ip_address(held[0]["ips"][0])
            label = f"container {what[:12]}"
    for name, info in nodes.items():
        if info.get("addr") == str(ip):
            return End(ip, name, f"node {name}")
    node = _owner_of(ip, owners)
    return End(ip, node, label if label != str(ip) else (f"pod {ip}" if node else str(ip)), netns_path)


def _ask(addr: str, port: int, query: dict[str, Any], timeout: float) -> dict[str, Any]:
    host = f"[{addr}]" if ":" in addr else addr
    url = f"http://{host}:{port}/trace/hop?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def trace(src: End, dst: End, nodes: dict[str, dict[str, str]], a: argparse.Namespace) -> dict[str, Any]:
    """Ask each node on the way for its hops; the whole path as data."""
    if not src.node:
        return {"ok": False, "hops": [], "broken": f"{src.label} is not on a node of this cluster: "
                                                   "a trace starts at a pod or a node", "fix": ""}
    by_addr = {info.get("addr"): name for name, info in nodes.items()}
    query = {"src": str(src.ip), "dst": str(dst.ip), "proto": a.proto.upper(), "port": a.port,
             "hostport": "1" if a.hostport else ""}
    hops: list[dict[str, Any]] = []
    node, stage, came_from = src.node, "origin", ""
    for _ in range(MAX_NODES):
        addr = nodes[node]["addr"]
        try:
            ans = _ask(addr, a.trace_port, {**query, "stage": stage, "from": came_from,
                                            "local": "1" if stage == "arrive" and node == dst.node else ""},
                       a.timeout)
        except (OSError, urllib.error.URLError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            return {"ok": False, "hops": hops, "broken": f"could not ask node {node} (agent at {addr}:{a.trace_port}: "
                    f"{why}); the path up to it is above", "fix": f"is podnet's agent on {node} running? "
                    f"`podnet node ls`; its log"}
        for h in ans["hops"]:
            hops.append({"node": node, **h})
            if not h["ok"]:
                return {"ok": False, "hops": hops, "broken": h["what"], "fix": h["fix"], "at": node}
        nxt = ans["next"]
        if nxt["kind"] == "deliver":
            at_dst = not dst.node or node == dst.node
            return {"ok": at_dst, "hops": hops, **({} if at_dst else {
                "broken": f"delivered on node {node}, but {dst.label} is on {dst.node}", "fix": ""})}
        if nxt["kind"] == "external" and dst.node and nxt.get("addr") in by_addr:
            came_from, node, stage = addr, by_addr[nxt["addr"]], "arrive"    # to a node on the underlay
            continue
        if nxt["kind"] == "external":
            if dst.node:
                return {"ok": False, "hops": hops, "at": node, "broken": f"leaves node {node} for outside the "
                        f"cluster, but {dst.label} is on node {dst.node}", "fix": "the route to its block"}
            return {"ok": True, "hops": hops}
        if nxt["kind"] != "node" or nxt.get("addr") not in by_addr:
            return {"ok": False, "hops": hops, "at": node, "broken": f"node {node} sends it to "
                    f"{nxt.get('addr', '?')}, which is no live node", "fix": "`podnet node ls`"}
        came_from, node, stage = addr, by_addr[nxt["addr"]], "arrive"
    return {"ok": False, "hops": hops, "broken": f"more than {MAX_NODES} nodes: a routing loop?", "fix": ""}


def _datastore(a: argparse.Namespace) -> tuple[dict[str, dict[str, str]], dict[Any, str], dict[str, Any],
                                              dict[str, str]]:
    """(nodes, pod CIDR → node, IPAM handles, pods by namespace/name) from etcd or Kubernetes."""
    use_lab(a)
    if a.kubeconfig:
        from ..agent.kubepeers import cluster_snapshot
        nodes, owners, pods = cluster_snapshot(a.kubeconfig)
        return nodes, owners, {}, pods
    from ..ipam.registry import NodeRegistry
    c, kv = connect(a)
    try:
        registry = NodeRegistry(c)
        return (registry.node_infos(), {cidr: n for cidr, n in registry.block_owners().items() if n},
                c.handles(), {})
    finally:
        kv.close()


def probe(src: End, dst: End, a: argparse.Namespace) -> dict[str, Any]:
    """A real packet from SRC's netns, followed through this node's nftables (net/nftrace.py):
    what each table's chains did to it, and whether DST answered."""
    from ..net import nftrace
    from ..net import probe as pr
    if not src.netns:
        return {"ok": False, "sent": "-", "why": f"--probe sends from SRC's netns: {src.label} has none on "
                "this machine (give a pod netns name, and run on its node)", "fix": ""}
    proto = a.proto
    sent = f"{proto} {dst.ip}" + (f":{a.port}" if a.port and proto != "icmp" else "")
    seen: list[nftrace.TraceEvent] = []
    answered = False
    with nftrace.armed(src.ip, dst.ip, proto, a.port) as session:
        for _ in range(3):           # the monitor may subscribe after the first packet: send again
            if proto == "icmp" or not a.port:
                answered = pr.ping(src.netns, str(dst.ip), timeout=1.0, tries=1)
            elif proto == "tcp":
                answered = pr.tcp_connect(src.netns, str(dst.ip), a.port, timeout=1.0)
            else:
                pr.udp_send(src.netns, str(dst.ip), a.port)
            seen = [e for e in session.read(timeout=1.5) if e.table != session.table]
            if seen or answered:
                break
    lines, dropped = [], None
    for e in seen:
        if e.what.startswith("packet:"):
            continue
        lines.append(f"{e.table} {e.chain}: {e.what}")
        if e.verdict == "drop" and dropped is None:
            dropped = e
    out: dict[str, Any] = {"sent": sent, "answered": answered, "seen": lines, "ok": answered and dropped is None}
    if dropped is not None:
        out["why"] = f"probe dropped on this node by {dropped.table} chain {dropped.chain}: {dropped.what}"
        out["fix"] = f"`nft list chain {dropped.table} {dropped.chain}`"
    elif not answered:
        out["why"] = f"probe: no answer from {dst.ip} (this node's nftables let it through: see above)"
    return out


def run(a: argparse.Namespace) -> int:
    nodes, owners, handles, pods = _datastore(a)
    try:
        src, dst = (resolve(x, nodes, owners, handles, pods) for x in (a.src, a.dst))
    except LookupError as e:
        print(f"podnet trace: {e}", file=sys.stderr)
        return 2
    out = trace(src, dst, nodes, a)
    out.update({"src": {"ip": str(src.ip), "node": src.node, "label": src.label},
                "dst": {"ip": str(dst.ip), "node": dst.node, "label": dst.label},
                "proto": a.proto, "port": a.port})
    if a.probe:
        out["probe"] = probe(src, dst, a)
        if not out["probe"].get("ok", False) and out["ok"]:
            out.update(ok=False, broken=out["probe"]["why"], fix=out["probe"].get("fix", ""))
    if a.json:
        print(json.dumps(out, indent=1))
        return 0 if out["ok"] else 1
    port = f" {a.proto}/{a.port}" if a.port else f" {a.proto}"
    print(f"trace {src.label} ({src.ip}, {src.node or 'outside'}) → {dst.label} ({dst.ip}, "
          f"{dst.node or 'outside the nodes'}){port}")
    for h in out["hops"]:
        print(f"  {h['node']:<6} {'✓' if h['ok'] else '✗'} {h['what']}")
    if "probe" in out:
        pr = out["probe"]
        print(f"probe from {src.label}: {pr['sent']} — {'answered' if pr.get('answered') else 'no answer'}")
        for line in pr.get("seen", []):
            print(f"  {src.node:<6} ~ {line}")
    if out["ok"]:
        print("path works")
        return 0
    print(f"✗ broken{' at node ' + out['at'] if out.get('at') else ''}: {out['broken']}")
    if out.get("fix"):
        print(f"  check: {out['fix']}")
    return 1
