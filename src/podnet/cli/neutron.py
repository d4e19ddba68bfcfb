"""`podnet neutron …`: the Neutron IPAM's side of a cloud, from any host that reaches Neutron.

  ports  --network N [--node NODE]    pod ports (node, CNI network, container, interface, address),
                                      ready ports and claimed blocks
  pairs  --network N                  each port with allowed address pairs: the nodes' VM ports
  gc     --network N --node NODE --cni-network NET [--keep CID[/IFNAME]]… (--node-port ID |
         --node-address IP) [--address-pairs per-ip|cidr|none]
                                      release the node's pod ports not kept, the pairs nobody holds
                                      and (cidr) its empty blocks — what CNI GC does on the node
Neutron by --url (noauth, or an endpoint and a token's worth of keystone: --auth-url with
--credentials-file, the plugin's file format).  Tables by default, --json for scripts.
"""
from __future__ import annotations

import argparse
from typing import Any

from .common import emit


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("neutron", help="the Neutron IPAM's ports, node pairs and their GC")
    nc = p.add_subparsers(dest="neutron_cmd", required=True)
    for name in ("ports", "pairs", "gc"):
        c = nc.add_parser(name)
        c.add_argument("--url", default="", help="the Neutron endpoint (http://host:9696)")
        c.add_argument("--auth-url", default="", help="keystone v3 (with --credentials-file)")
        c.add_argument("--credentials-file", default="")
        c.add_argument("--network", required=True, help="the Neutron network (ID or name)")
        c.add_argument("--subnet", default="")
        c.add_argument("--json", action="store_true")
        if name in ("ports", "gc"):
            c.add_argument("--node", required=name == "gc", default="")
        if name == "gc":
            c.add_argument("--cni-network", required=True, help="the CNI network's name (the conflist's)")
            c.add_argument("--keep", action="append", default=[], help="containerID[/ifname] still running")
            c.add_argument("--node-port", default="")
            c.add_argument("--node-address", default="")
            c.add_argument("--address-pairs", choices=("per-ip", "cidr", "none"), default="per-ip")
            c.add_argument("--pod-range", default="")
    p.set_defaults(fn=run)


def _ipam(a: argparse.Namespace, node: str = "", cni_network: str = "") -> Any:
    import ipaddress

    from ..ipam.neutron import NeutronIpam, Settings
    from ..ipam.neutron_api import NeutronAPI
    from ..plugins.neutron_ipam import credentials_from_file
    if not a.url and not a.auth_url:
        raise ValueError("give --url (the Neutron endpoint) or --auth-url with --credentials-file")
    creds = credentials_from_file({"credentialsFile": a.credentials_file}, a.auth_url) if a.auth_url else None
    pod_range = ipaddress.ip_network(a.pod_range) if getattr(a, "pod_range", "") else None
    s = Settings(network=a.network, subnet=a.subnet, node=node, cni_network=cni_network,
                 node_port=getattr(a, "node_port", ""), node_address=getattr(a, "node_address", ""),
                 pairs=getattr(a, "address_pairs", "per-ip"), pod_range=pod_range)
    return NeutronIpam(NeutronAPI(a.url, creds), s)


def run(a: argparse.Namespace) -> int:
    from ..ipam.neutron import OWNER_BLOCK, OWNER_POD, OWNER_POOL, parse_description
    if a.neutron_cmd == "gc":
        ipam = _ipam(a, a.node, a.cni_network)
        keep = {(k.partition("/")[0], k.partition("/")[2] or "net1") for k in a.keep}
        gone = ipam.gc(keep)
        blocks = ipam.release_empty_blocks() if a.address_pairs == "cidr" else []
        released = {"ports": [{"id": p.id, "ip": str(p.ip), "name": p.name} for p in gone],
                    "blocks": [str(b) for b in blocks]}
        emit(a, released, [["port", p.name, str(p.ip)] for p in gone] + [["block", str(b), ""] for b in blocks],
             ["RELEASED", "WHAT", "ADDRESS"])
        return 0
    ipam = _ipam(a)
    sub = ipam.subnet()
    ports = ipam.api.list("port", [("network_id", sub.network_id)])
    if a.neutron_cmd == "pairs":
        rows: list[list[Any]] = []
        data: list[dict[str, Any]] = []
        for d in ports:
            pairs = d.get("allowed_address_pairs") or []
            if not pairs:
                continue
            ips = ",".join(f["ip_address"] for f in d.get("fixed_ips", []))
            data.append({"port": d["id"], "name": d.get("name", ""), "addresses": ips, "pairs": pairs})
            for p in pairs:
                rows.append([d.get("name") or d["id"], ips, p["ip_address"], p.get("mac_address", "")])
        emit(a, data, rows, ["PORT", "ADDRESS", "PAIR", "PAIR MAC"])
        return 0
    rows, data = [], []
    for d in ports:
        owner = d.get("device_owner", "")
        if owner not in (OWNER_POD, OWNER_POOL, OWNER_BLOCK):
            continue
        desc = parse_description(str(d.get("description", "")))
        if a.node and desc.get("node") != a.node:
            continue
        ip = ",".join(f["ip_address"] for f in d.get("fixed_ips", []))
        kind = {OWNER_POD: "pod", OWNER_POOL: "ready", OWNER_BLOCK: "block"}[owner]
        entry = {"kind": kind, "node": desc.get("node", ""), "network": desc.get("network", ""),
                 "container": d.get("device_id", "") if kind == "pod" else "", "ifname": desc.get("ifname", ""),
                 "name": d.get("name", ""), "address": ip, "mac": d.get("mac_address", ""), "id": d["id"]}
        data.append(entry)
        rows.append([kind, entry["node"], entry["network"], entry["name"] if kind != "block" else desc.get("block", ""),
                     ip, entry["mac"]])
    emit(a, data, sorted(rows), ["KIND", "NODE", "CNI NETWORK", "PORT", "ADDRESS", "MAC"])
    return 0
