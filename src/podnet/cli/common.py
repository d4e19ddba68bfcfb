"""What the podnet commands share: one output shape (a table, or --json for scripts) and the
connection to the cluster datastore in etcd (`podnet ipam`, `podnet node`)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..ipam.cluster import DEFAULT_PREFIX, ClusterIpam


def positive(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a lab of 0 nodes, 0 rounds … makes no sense)."""
    return _at_least(text, 1)


def non_negative(text: str) -> int:
    return _at_least(text, 0)


def _at_least(text: str, low: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"{n}: must be at least {low}")
    return n


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
    p.add_argument("--etcd", action="append", default=[], help="etcd endpoint (repeatable); default: the only "
                   "`podnet lab` up, else http://127.0.0.1:2379")
    p.add_argument("--lab", default="", help="a lab's datastore (podnet lab up --name NAME), as kubectl's context")
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--json", action="store_true")
    return p


def share_options(p: argparse.ArgumentParser) -> None:
    """The datastore options of an etcd command also after its subcommand (`podnet node ls --lab x`,
    as people type them), on every nested parser, without overriding a value given before it."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("--etcd", action="append", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                child.add_argument("--lab", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                child.add_argument("--prefix", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                if not any("--json" in a.option_strings for a in child._actions):
                    child.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                share_options(child)


LAB_STATE_DIR = "/run/podnet-lab"      # = lab.cluster.STATE_DIR (not imported: the CLI starts without the lab)


def use_lab(a: argparse.Namespace) -> None:
    """Commands that need a datastore find a lab's as kubectl finds its context: `--lab NAME`, or —
    when no datastore was given (--etcd, --kubeconfig) — the only lab up.  The lab's etcd and API
    server listen on its fabric, so this process enters the fabric's network namespace (once, before
    any client is made: their threads are born there) and takes the lab's etcd, or for a lab on the
    Kubernetes datastore its admin kubeconfig."""
    import json
    import os
    given = bool(getattr(a, "etcd", None)) or bool(getattr(a, "kubeconfig", ""))
    name = getattr(a, "lab", "")
    if given and not name:
        return
    try:
        names = sorted(f[:-5] for f in os.listdir(LAB_STATE_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        names = []
    if not name:
        if len(names) != 1:
            return                   # no lab (or several): the defaults (a node's own etcd)
        name = names[0]
    elif name not in names:
        raise LookupError(f"--lab {name}: no such lab (labs up: {', '.join(names) or 'none'})")
    with open(os.path.join(LAB_STATE_DIR, f"{name}.json")) as f:
        st = json.load(f)
    from ..net import netns
    netns.move_this_thread(f"/run/netns/{st['fabric']}")
    if st.get("datastore") == "kubernetes" and hasattr(a, "kubeconfig"):
        a.kubeconfig = st["kubeconfig"]
    elif st.get("datastore") == "kubernetes":
        raise LookupError(f"lab {name} keeps its nodes in the Kubernetes API, not in etcd: "
                          f"podnet lab kubectl --name {name} -- get nodes")
    else:
        a.etcd = [st["etcd"]]


def connect(a: argparse.Namespace) -> tuple[ClusterIpam, Any]:
    """(a read-write view of the cluster IPAM as the CLI, its KV: close it when done)."""
    from ..ipam.etcdkv import EtcdKV
    use_lab(a)
    kv = EtcdKV(a.etcd or ["http://127.0.0.1:2379"])
    return ClusterIpam(kv, node="podnet-cli", prefix=a.prefix), kv
