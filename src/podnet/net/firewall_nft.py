"""The firewall plugin's rules in the podnet-owned table `inet podnet_firewall`, plus
`bridge podnet_isolation` for traffic that never leaves a bridge.

Per pod: its addresses in sets pods4/pods6 (comment "<network> <containerID>"), so the
forward chain accepts replies to pods and everything from them — the reference's
per-container accepts, as set lookups.  Per isolated bridge (ingressPolicy
same-bridge/isolated): routed traffic from one such bridge into another is dropped;
with `isolated`, IP frames between two isolated pods' bridge ports are dropped too (the
pods' host veths, in `bridge podnet_isolation`, which bridged traffic never leaves).
A user chain `admin` is consulted first (the reference's CNI-ADMIN).
Only validated values reach a script: addresses, and interface names checked by the caller.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from . import nft

TABLE = "inet podnet_firewall"
BRIDGE_TABLE = "bridge podnet_isolation"
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _bridges(kind: str) -> list[str]:
    """Bridge names in set `kind` (same_bridge | isolated)."""
    out = []
    for obj in nft.list_json(f"set {TABLE} {kind}"):
        for elem in (obj.get("set") or {}).get("elem", []) or []:
            out.append(str(elem["elem"]["val"] if isinstance(elem, dict) else elem))
    return sorted(set(out))


def _base(admin_chain: str) -> list[str]:
    return [
        f"add table {TABLE}",
        f"add set {TABLE} pods4 {{ type ipv4_addr; }}",
        f"add set {TABLE} pods6 {{ type ipv6_addr; }}",
        f"add set {TABLE} same_bridge {{ type ifname; }}",
        f"add set {TABLE} isolated {{ type ifname; }}",
        f"add chain {TABLE} {admin_chain}",
        f"add chain {TABLE} isolation",
        f"add chain {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"flush chain {TABLE} forward",
        f"add rule {TABLE} forward jump {admin_chain}",
        f"add rule {TABLE} forward jump isolation",
        f"add rule {TABLE} forward ip daddr @pods4 ct state established,related accept",
        f"add rule {TABLE} forward ip saddr @pods4 accept",
        f"add rule {TABLE} forward ip6 daddr @pods6 ct state established,related accept",
        f"add rule {TABLE} forward ip6 saddr @pods6 accept",
    ]


def _isolation_rules(policy_bridges: list[str]) -> list[str]:
    """Routed traffic from any policy bridge into another one → drop."""
    cmds = [f"flush chain {TABLE} isolation"]
    for br in policy_bridges:
        cmds.append(f'add rule {TABLE} isolation iifname "{br}" oifname != "{br}" oifname @same_bridge drop')
        cmds.append(f'add rule {TABLE} isolation iifname "{br}" oifname != "{br}" oifname @isolated drop')
    return cmds


def _port_isolation(port: str, comment: str) -> list[str]:
    """Bridged traffic between two isolated pods' ports → drop (IP only: ARP still answers)."""
    return [
        f"add table {BRIDGE_TABLE}",
        f"add set {BRIDGE_TABLE} ports {{ type ifname; }}",
        f"add chain {BRIDGE_TABLE} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"flush chain {BRIDGE_TABLE} forward",
        f"add rule {BRIDGE_TABLE} forward iifname @ports oifname @ports ether type {{ ip, ip6 }} drop",
        f'add element {BRIDGE_TABLE} ports {{ "{port}" comment "{comment}" }}',
    ]


def add(network: str, container_id: str, addresses: Iterable[IPAddr], admin_chain: str,
        bridge: str = "", policy: str = "open", port: str = "") -> None:
    """The pod's accepts, and (for same-bridge/isolated) its bridge's isolation — one transaction."""
    cmds = _base(admin_chain)
    comment = nft.owner_tag(network, container_id)
    for ip in addresses:
        cmds.append(f'add element {TABLE} pods{ip.version} {{ {ip} comment "{comment}" }}')
    if bridge and policy in ("same-bridge", "isolated"):
        kind = "isolated" if policy == "isolated" else "same_bridge"
        same, iso = _bridges("same_bridge"), _bridges("isolated")
        (iso if kind == "isolated" else same).append(bridge)
        cmds.append(f'add element {TABLE} {kind} {{ "{bridge}" }}')
        cmds += _isolation_rules(sorted(set(same + iso)))
        if policy == "isolated" and port:
            cmds += _port_isolation(port, comment)
    nft.run("\n".join(cmds) + "\n")


def remove(network: str, container_id: str | None = None, keep: set[str] | None = None) -> int:
    """Delete the pod's set elements (all of the network's not in `keep` when container_id is None).
    Bridge isolation stays: other pods may still use the bridge (as in the reference)."""
    doomed = []
    for fam in (4, 6):
        for obj in nft.list_json(f"set {TABLE} pods{fam}"):
            for elem in (obj.get("set") or {}).get("elem", []) or []:
                if not isinstance(elem, dict):
                    continue
                if nft.owned(str(elem["elem"].get("comment", "")), network, container_id, keep):
                    doomed.append((fam, str(elem["elem"]["val"])))
    for fam, ip in doomed:
        nft.run_ignoring_missing(f"delete element {TABLE} pods{fam} {{ {ip} }}\n")
    for obj in nft.list_json(f"set {BRIDGE_TABLE} ports"):
        for elem in (obj.get("set") or {}).get("elem", []) or []:
            if not isinstance(elem, dict):
                continue
            if nft.owned(str(elem["elem"].get("comment", "")), network, container_id, keep):
                nft.run_ignoring_missing(f'delete element {BRIDGE_TABLE} ports {{ "{elem["elem"]["val"]}" }}\n')
                doomed.append((0, str(elem["elem"]["val"])))
    return len(doomed)


def has_pod(network: str, container_id: str, ip: IPAddr) -> bool:
    for obj in nft.list_json(f"set {TABLE} pods{ip.version}"):
        for elem in (obj.get("set") or {}).get("elem", []) or []:
            if isinstance(elem, dict) and str(elem["elem"]["val"]) == str(ip) and \
                    elem["elem"].get("comment") == nft.owner_tag(network, container_id):
                return True
    return False
