"""`podnet node …`: the nodes registered in the cluster datastore (etcd).

  ls          every node that ever registered: live (lease held) or dead, its underlay address,
              backend, VTEP MAC and blocks
  rm NAME     remove a node now (`kubectl delete node` for podnet): its registration goes, every
              agent drops its routes at once; its blocks are reclaimed after the agents' grace
  rotate-key NAME
              ask NAME's agent for a new WireGuard key pair (--encryption wireguard): it publishes
              the new public key, every peer follows, traffic continues
With --agent-socket (run on a node), `ls` adds what that node's agent sees of each peer: its
WireGuard handshake's age, its BGP session's state (and BIRD's reason when not Established).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..ipam.registry import NodeRegistry
from ..net.wguapi import fingerprint
from .common import connect, emit, etcd_command, share_options


def add_parsers(sub: Any) -> None:
    p = etcd_command(sub, "node", "list and remove the cluster's nodes (etcd datastore)")
    np = p.add_subparsers(dest="node_cmd", required=True)
    ls = np.add_parser("ls")
    ls.add_argument("--agent-socket", default="", help="this node's agent: add its WireGuard handshake ages")
    rm = np.add_parser("rm")
    rm.add_argument("name")
    rk = np.add_parser("rotate-key")
    rk.add_argument("name")
    share_options(p)
    p.set_defaults(fn=run)


def run(a: argparse.Namespace) -> int:
    c, kv = connect(a)
    registry = NodeRegistry(c)
    try:
        if a.node_cmd == "rm":
            if not registry.remove_node(a.name):
                print(f"node {a.name} is not registered")
                return 1
            print(f"removed node {a.name}")
            return 0
        live = registry.node_infos()
        if a.node_cmd == "rotate-key":
            if a.name not in live:
                print(f"node {a.name} is not live: its agent cannot rotate its key")
                return 1
            if not live[a.name].get("wg_pubkey"):
                print(f"node {a.name} does not encrypt (its agent runs without --encryption wireguard)")
                return 1
            registry.request(a.name, "rotate-key")
            print(f"asked node {a.name} for a new WireGuard key (was {fingerprint(live[a.name]['wg_pubkey'])})")
            return 0
        ages = handshake_ages(a.agent_socket) if a.agent_socket else {}
        sessions = bgp_sessions(a.agent_socket) if a.agent_socket else {}
        blocks: dict[str, list[str]] = {}
        for pool in c.pools():
            for b, _ in c.blocks(pool.name):
                blocks.setdefault(b.node, []).append(str(b.cidr))
        data: list[dict[str, Any]] = [{"node": n, "state": "live", "addr": i.get("addr", ""), "backend": i.get("backend", ""),
                 "vtep_mac": i.get("vtep_mac", ""), "encryption": i.get("encryption", ""),
                 "wg_pubkey": i.get("wg_pubkey", ""), "handshake_age": ages.get(i.get("wg_pubkey", ""), ""),
                 "bgp_as": i.get("bgp_as", ""), "bgp_session": sessions.get(n, ""),
                 "blocks": sorted(blocks.get(n, []))} for n, i in sorted(live.items())]
        data += [{"node": n, "state": "dead", "addr": "", "backend": "", "vtep_mac": "", "encryption": "",
                  "wg_pubkey": "", "handshake_age": "", "bgp_as": "", "bgp_session": "", "blocks": sorted(blocks.get(n, []))}
                 for n in sorted(registry.dead_nodes())]
        for peer, state in sorted(sessions.items()):          # external peers (a top-of-rack router…)
            if peer.startswith("peer "):
                data.append({"node": peer, "state": "external", "addr": peer[5:], "backend": "bgp", "vtep_mac": "",
                             "encryption": "", "wg_pubkey": "", "handshake_age": "", "bgp_as": "",
                             "bgp_session": state, "blocks": []})
        head = ["NODE", "STATE", "ADDRESS", "BACKEND", "VTEP MAC", "WG KEY", *(["HANDSHAKE"] if ages else []),
                *(["BGP SESSION"] if sessions else []), "BLOCKS"]
        emit(a, data, [[d["node"], d["state"], d["addr"], d["backend"], d["vtep_mac"], fingerprint(d["wg_pubkey"]),
                        *([_age(d["handshake_age"])] if ages else []), *([d["bgp_session"] or "-"] if sessions else []),
                        " ".join(d["blocks"])] for d in data], head)
        return 0
    finally:
        kv.close()


def handshake_ages(socket_path: str) -> dict[str, float | None]:
    """public key → seconds since the last handshake with it (None: never), as this node's
    agent sees them; {} when the agent runs without encryption."""
    import json

    from ..wire import http_get_unix
    status, body = http_get_unix(socket_path, "/wireguard")
    if status != 200:
        return {}
    return {p["public_key"]: p["handshake_age"] for p in json.loads(body)["peers"]}


def bgp_sessions(socket_path: str) -> dict[str, str]:
    """node (or "peer ADDR") → its BGP session's state as this node's BIRD has it ("Established",
    or BIRD's reason); {} when the agent does not run BGP."""
    import json

    from ..wire import http_get_unix
    status, body = http_get_unix(socket_path, "/bgp")
    if status != 200:
        return {}
    return {s["peer"]: s["info"] or s["state"] for s in json.loads(body)["sessions"]}


def _age(age: float | str | None) -> str:
    if age == "":
        return "-"        # no peer entry: this node itself, a dead node, one without a key
    return "never" if age is None else f"{float(age):.0f}s ago"
