"""`podnet` — the command line: one module per command group, each adding its parsers; the
work itself lives in the packages below (agent/, lab, install, manifests, …)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .. import __version__
from . import agent, demo, dhcp, install, ipam, lab, neutron, node, policy, relay, trace


def cmd_version(a: argparse.Namespace) -> int:
    from ..cni.version import SUPPORTED
    print(json.dumps({"podnet": __version__, "cniVersions": list(SUPPORTED)}) if a.json
          else f"podnet {__version__} (CNI {', '.join(SUPPORTED)})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet", description="podnet CNI plugins and node agent")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in (install, demo, lab, agent, ipam, neutron, node, dhcp, policy, relay, trace):
        group.add_parsers(sub)
    v = sub.add_parser("version")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return int(a.fn(a))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from .errors import explain
        if os.environ.get("PODNET_DEBUG"):
            raise
        print(f"podnet {a.cmd}: {explain(e)}", file=sys.stderr)
        return 1
