"""What the podnet commands share: one output shape (a table, or --json for scripts) and the
connection to the cluster datastore in etcd (`podnet ipam`, `podnet node`)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..ipam.cluster import DEFAULT_PREFIX, ClusterIpam


def table(rows: list[list[Any]], head: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)] if rows else [len(h) for h in head]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*map(str, r)) for r in rows])


def emit(a: argparse.Namespace, data: Any, rows: list[list[Any]], head: list[str]) -> None:
    """--json: the data; else a table (the podnet CLI's one output shape)."""
    print(json.dumps(data, indent=2, sort_keys=True) if a.json else table(rows, head))


def etcd_command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A `podnet` subcommand that talks to the cluster datastore in etcd (ipam, node)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("--etcd", action="append", default=[], help="etcd endpoint (repeatable), default http://127.0.0.1:2379")
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--json", action="store_true")
    return p


def connect(a: argparse.Namespace) -> tuple[ClusterIpam, Any]:
    """(a read-write view of the cluster IPAM as the CLI, its KV: close it when done)."""
    from ..ipam.etcdkv import EtcdKV
    kv = EtcdKV(a.etcd or ["http://127.0.0.1:2379"])
    return ClusterIpam(kv, node="podnet-cli", prefix=a.prefix), kv
