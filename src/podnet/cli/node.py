"""`podnet node …`: the nodes registered in the cluster datastore (etcd).

  ls          every node that ever registered: live (lease held) or dead, its underlay address,
              backend, VTEP MAC and blocks
  rm NAME     remove a node now (`kubectl delete node` for podnet): its registration goes, every
              agent drops its routes at once; its blocks are reclaimed after the agents' grace
"""
from __future__ import annotations

import argparse
from typing import Any

from ..ipam.registry import NodeRegistry
from .common import connect, emit, etcd_command


def add_parsers(sub: Any) -> None:
    p = etcd_command(sub, "node", "list and remove the cluster's nodes (etcd datastore)")
    np = p.add_subparsers(dest="node_cmd", required=True)
    np.add_parser("ls")
    rm = np.add_parser("rm")
    rm.add_argument("name")
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
        blocks: dict[str, list[str]] = {}
        for pool in c.pools():
            for b, _ in c.blocks(pool.name):
                blocks.setdefault(b.node, []).append(str(b.cidr))
        data = [{"node": n, "state": "live", "addr": i.get("addr", ""), "backend": i.get("backend", ""),
                 "vtep_mac": i.get("vtep_mac", ""), "blocks": sorted(blocks.get(n, []))} for n, i in sorted(live.items())]
        data += [{"node": n, "state": "dead", "addr": "", "backend": "", "vtep_mac": "", "blocks": sorted(blocks.get(n, []))}
                 for n in sorted(registry.dead_nodes())]
        emit(a, data, [[d["node"], d["state"], d["addr"], d["backend"], d["vtep_mac"], " ".join(d["blocks"])]
                       for d in data], ["NODE", "STATE", "ADDRESS", "BACKEND", "VTEP MAC", "BLOCKS"])
        return 0
    finally:
        kv.close()
