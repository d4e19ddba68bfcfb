"""`podnet dhcp leases`: the DHCP leases the node's agent holds for its pods (read from the
agent's state dir, so it works while the agent is down too)."""
from __future__ import annotations

import argparse
import time
from typing import Any

from .common import emit


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("dhcp", help="the DHCP leases podnet-dhcp holds on this node")
    dp = p.add_subparsers(dest="dhcp_cmd", required=True)
    ls = dp.add_parser("leases")
    ls.add_argument("--state-dir", default="/var/lib/podnet", help="the agent's --state-dir")
    ls.add_argument("--json", action="store_true")
    p.set_defaults(fn=run)


def run(a: argparse.Namespace) -> int:
    import os

    from ..dhcp.keeper import LeaseKeeper
    if not os.path.isdir(a.state_dir):
        raise FileNotFoundError(2, "the agent's state dir does not exist (give --state-dir)", a.state_dir)
    now = time.time()
    leases = [lease for _, lease in LeaseKeeper(a.state_dir).stored()]
    data = [{"container": x.container_id, "network": x.network, "ifname": x.ifname, "ip": x.ip,
             "prefixlen": x.prefixlen, "server": x.server_ip, "renewals": x.renewals,
             "expiresIn": round(x.expires - now), "renewAt": round(x.acquired + x.t1 - now)} for x in leases]
    emit(a, data, [[d["container"], d["network"], d["ifname"], f"{d['ip']}/{d['prefixlen']}", d["server"],
                    f"{d['expiresIn']}s", str(d["renewals"])] for d in data],
         ["CONTAINER", "NETWORK", "IFNAME", "ADDRESS", "SERVER", "EXPIRES IN", "RENEWALS"])
    return 0
