"""ipMasq on nftables: a verdict map keyed by pod address, in the podnet-owned
table `inet podnet_masq`.

One element per pod (O(1) add/delete, a hash lookup per packet), pointing at a small
chain per (network, subnet) that returns for in-subnet and multicast destinations and
masquerades the rest — the reference plugins' rule, without a chain per pod.
Element comments carry "<network> <containerID>" so DEL and GC find a pod's entries.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from . import nft

TABLE = "inet podnet_masq"
_MCAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_KEY = {4: ("ip", "pods4", "ipv4_addr"), 6: ("ip6", "pods6", "ipv6_addr")}

IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _chain(network: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return "net_" + hashlib.sha256(f"{network}|{subnet}".encode()).hexdigest()[:16]


def _base() -> list[str]:
    return [
        f"add table {TABLE}",
        f"add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"add map {TABLE} pods4 {{ type ipv4_addr : verdict; }}",
        f"add map {TABLE} pods6 {{ type ipv6_addr : verdict; }}",
        f"flush chain {TABLE} postrouting",
        f"add rule {TABLE} postrouting ip saddr vmap @pods4",
        f"add rule {TABLE} postrouting ip6 saddr vmap @pods6",
    ]


def add(network: str, container_id: str, addresses: Iterable[IPIface]) -> None:
    """Masquerade traffic from each address to outside its own subnet (one transaction)."""
    cmds = _base()
    for a in addresses:
        fam = a.version
        proto, mapname, _ = _KEY[fam]
        chain = _chain(network, a.network)
        cmds += [f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}",
                 f"add rule {TABLE} {chain} {proto} daddr {a.network} return",
                 f"add rule {TABLE} {chain} {proto} daddr {_MCAST[fam]} return",
                 f"add rule {TABLE} {chain} masquerade",
                 f'add element {TABLE} {mapname} {{ {a.ip} comment "{nft.owner_tag(network, container_id)}" : jump {chain} }}']
    nft.run("\n".join(cmds) + "\n")


def remove(addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
    """Delete the elements of these addresses; missing ones are fine (DEL is idempotent)."""
    for ip in addresses:
        nft.run_ignoring_missing(f"delete element {TABLE} {_KEY[ip.version][1]} {{ {ip} }}\n")


def owned_by(network: str, container_id: str | None = None,
             keep: set[str] | None = None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of this network's elements: the container's (DEL without IPs), or (GC) those
    of containers not in `keep`."""
    out = []
    for fam in (4, 6):
        for obj in nft.list_json(f"map {TABLE} {_KEY[fam][1]}"):
            for elem in (obj.get("map") or {}).get("elem", []) or []:
                key = elem[0] if isinstance(elem, list) else elem
                val = key.get("elem", {}) if isinstance(key, dict) else {}
                if nft.owned(str(val.get("comment", "")), network, container_id, keep):
                    out.append(ipaddress.ip_address(str(val.get("val"))))
    return out


NODE_TABLE = "inet podnet_node_masq"


def set_cluster_masquerade(cidrs: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
                           keep_source: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
    """The node's rule for the cluster tier: traffic from the cluster's pod CIDRs to anywhere
    outside them (and outside multicast) leaves with the node's address; pod → pod across
    nodes keeps its source.  keep_source: pools the network routes natively (BGP, `no-nat-cidr`):
    their pods keep their own address everywhere.  Replaces the table's previous content in one
    transaction."""
    cmds = [f"add table {NODE_TABLE}", f"delete table {NODE_TABLE}", f"add table {NODE_TABLE}",
            f"add chain {NODE_TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"]
    keep = set(keep_source)
    for c in cidrs:
        if c in keep:
            continue
        proto = "ip" if c.version == 4 else "ip6"
        cmds.append(f"add rule {NODE_TABLE} postrouting {proto} saddr {c} {proto} daddr != {c} "
                    f"{proto} daddr != {_MCAST[c.version]} masquerade")
    nft.run("\n".join(cmds) + "\n")


def cluster_masquerade_present(family: int) -> bool:
    """Whether the node's masquerade table has its rule for this family (what `podnet trace`
    checks for pod traffic leaving the cluster)."""
    proto = "ip" if family == 4 else "ip6"
    for obj in nft.list_json(f"table {NODE_TABLE}"):
        rule = obj.get("rule")
        if not isinstance(rule, dict):
            continue
        exprs = rule.get("expr", [])
        if any("masquerade" in e for e in exprs) and any(
                isinstance(e.get("match"), dict) and e["match"].get("left", {}).get("payload", {}).get("protocol") == proto
                for e in exprs):
            return True
    return False
