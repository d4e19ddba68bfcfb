"""`podnet relay`: the fan-out between the API server and many agents (relay/)."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def _listen(text: str) -> str:
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return text


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("relay", help="serve the cluster-wide lists and watches agents follow, from one list and "
                                     "watch of the API server (run one per few hundred nodes)")
    p.add_argument("--kubeconfig", default="", help="default: in-cluster, then $KUBECONFIG")
    p.add_argument("--listen", type=_listen, default="0.0.0.0:5473", help="HOST:PORT (default 0.0.0.0:5473)")
    p.add_argument("--allow", action="append", default=[],
                   help="a user the relay serves, or group:NAME (repeatable; default: the agents' ServiceAccount, "
                        "system:serviceaccount:podnet-system:podnet-agent)")
    p.add_argument("--keep-annotations", action="append", default=[], metavar="PREFIX",
                   help="annotations with this prefix pass through on every kind (podnet.io/ on Nodes always do)")
    p.add_argument("--tls-cert", default="", help="serve https with this certificate (PEM; the key may be in it)")
    p.add_argument("--tls-key", default="")
    p.add_argument("--log-level", default="info")
    p.set_defaults(fn=cmd_relay)


def cmd_relay(a: argparse.Namespace) -> int:
    from ..relay.main import run
    for path in (a.kubeconfig, a.tls_cert, a.tls_key):
        if path and not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(a.kubeconfig, a.listen, a.allow, a.keep_annotations, a.tls_cert, a.tls_key)
