"""`podnet ipam …`: look at and repair the cluster IPAM in etcd.

  pool add NAME CIDR [--block-size N] [--gateway IP]   pool ls   pool rm NAME
  ls                      blocks per node with usage
  show IP|CONTAINER       who holds an address / what a container holds
  release HANDLE          free network/containerID/ifname by hand
  check                   leaks, conflicts (exit 1 when something is wrong)
  gc --node N --network NET --keep CID[/IFNAME]…   release what is not kept
  reclaim [--grace S]     take back the blocks of nodes whose lease expired
Tables by default, --json for scripts.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any

from ..ipam.cluster import DEFAULT_BLOCK, ClusterIpam, Pool
from ..ipam.registry import NodeRegistry
from .common import connect, emit, etcd_command, share_options


def add_parsers(sub: Any) -> None:
    p = etcd_command(sub, "ipam", "inspect and repair the cluster IPAM in etcd")
    ip = p.add_subparsers(dest="ipam_cmd", required=True)
    pool = ip.add_parser("pool")
    pc = pool.add_subparsers(dest="pool_cmd", required=True)
    pa = pc.add_parser("add")
    pa.add_argument("name")
    pa.add_argument("cidr")
    pa.add_argument("--block-size", type=int)
    pa.add_argument("--gateway")
    pc.add_parser("ls")
    pr = pc.add_parser("rm")
    pr.add_argument("name")
    ip.add_parser("ls")
    sh = ip.add_parser("show")
    sh.add_argument("what")
    rel = ip.add_parser("release")
    rel.add_argument("handle", help="network/containerID/ifname")
    ip.add_parser("check")
    gc = ip.add_parser("gc")
    gc.add_argument("--node", required=True)
    gc.add_argument("--network", required=True)
    gc.add_argument("--keep", action="append", default=[], help="containerID[/ifname] still running")
    rc = ip.add_parser("reclaim", help="take back blocks of nodes whose lease expired (run twice: "
                                        "the first pass only marks them dead)")
    rc.add_argument("--grace", type=float, default=300.0, help="seconds a node must stay dead (default 300)")
    share_options(p)
    p.set_defaults(fn=run)


def run(a: argparse.Namespace) -> int:
    c, kv = connect(a)
    try:
        return _dispatch(a, c, kv)
    finally:
        kv.close()


def _dispatch(a: argparse.Namespace, c: ClusterIpam, kv: Any) -> int:
    if a.ipam_cmd == "pool":
        if a.pool_cmd == "add":
            cidr = ipaddress.ip_network(a.cidr)
            pool = Pool(a.name, cidr, a.block_size or DEFAULT_BLOCK[cidr.version],
                        ipaddress.ip_address(a.gateway) if a.gateway else None)
            c.ensure_pool(pool)
            print(f"pool {a.name} {cidr} blocks /{pool.block_size}")
            return 0
        if a.pool_cmd == "rm":
            if any(b.allocations for b, _ in c.blocks(a.name)):
                print(f"pool {a.name} still has allocations; release them first", file=sys.stderr)
                return 1
            kv.delete_prefix(f"{c.prefix}blocks/{a.name}/")
            kv.delete_prefix(c.pool_key(a.name))
            return 0
        pools = c.pools()
        emit(a, [dict(p.to_json(), name=p.name) for p in pools],
             [[p.name, str(p.cidr), f"/{p.block_size}", str(p.gateway or "")] for p in pools],
             ["POOL", "CIDR", "BLOCK", "GATEWAY"])
        return 0
    if a.ipam_cmd == "ls":
        data, rows = [], []
        for p in c.pools():
            for b, _ in sorted(c.blocks(p.name), key=lambda x: int(x[0].cidr.network_address)):
                data.append({"pool": p.name, "block": str(b.cidr), "node": b.node, "used": len(b.allocations),
                             "size": b.cidr.num_addresses, "nodeSubnet": b.whole})
                rows.append([p.name, str(b.cidr), b.node, "node subnet (host-local)" if b.whole
                             else f"{len(b.allocations)}/{b.cidr.num_addresses}"])
        emit(a, data, rows, ["POOL", "BLOCK", "NODE", "USED"])
        return 0
    if a.ipam_cmd == "show":
        handles = c.handles()
        hits = {h: r for h, r in handles.items() if a.what in r["ips"] or h.split("/")[1] == a.what}
        emit(a, hits, [[h, ",".join(r["ips"]), r.get("node", "")] for h, r in sorted(hits.items())],
             ["HANDLE", "ADDRESSES", "NODE"])
        return 0 if hits else 1
    if a.ipam_cmd == "release":
        freed = c.release(a.handle)
        print(json.dumps([str(i) for i in freed]) if a.json else (", ".join(map(str, freed)) or "nothing held"))
        return 0
    if a.ipam_cmd == "check":
        problems = c.check() + NodeRegistry(c).stale_blocks()
        emit(a, problems, [[p] for p in problems], ["PROBLEM"])
        return 1 if problems else 0
    if a.ipam_cmd == "reclaim":
        registry = NodeRegistry(c)
        done = registry.reclaim(a.grace)
        dead = sorted(registry.dead_nodes())
        emit(a, {"reclaimed": done, "dead": dead},
             [[n, str(len(h))] for n, h in done.items()] + [[n, "waiting"] for n in dead if n not in done],
             ["NODE", "RELEASED"])
        return 0
    if a.ipam_cmd == "gc":
        keep = {(k.partition("/")[0], k.partition("/")[2]) for k in a.keep}  # no ifname: every interface
        gone = ClusterIpam(kv, a.node, c.prefix).gc(a.network, keep)
        emit(a, gone, [[g] for g in gone], ["RELEASED"])
        return 0
    return 2
