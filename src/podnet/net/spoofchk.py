"""macspoofchk: drop frames whose source MAC is not the pod's, per bridge port.

One podnet-owned table `bridge podnet_spoofchk` with two sets: the guarded ports and
the allowed (port . MAC) pairs, so adding a pod is two element inserts.
"""
from __future__ import annotations

from . import nft

TABLE = "bridge podnet_spoofchk"


def add(port: str, mac: str, network: str, container_id: str) -> None:
    comment = nft.owner_tag(network, container_id)
    nft.run("\n".join([
        f"add table {TABLE}",
        f"add chain {TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}",
        f"add set {TABLE} ports {{ type ifname; }}",
        f"add set {TABLE} allowed {{ type ifname . ether_addr; }}",
        f"flush chain {TABLE} prerouting",
        f"add rule {TABLE} prerouting iifname @ports iifname . ether saddr != @allowed drop",
        f'add element {TABLE} ports {{ "{port}" comment "{comment}" }}',
        f'add element {TABLE} allowed {{ "{port}" . {mac} comment "{comment}" }}',
    ]) + "\n")


def remove(port: str, mac: str) -> None:
    nft.run_ignoring_missing(f'delete element {TABLE} allowed {{ "{port}" . {mac} }}\n')
    nft.run_ignoring_missing(f'delete element {TABLE} ports {{ "{port}" }}\n')


def owned_by(network: str, container_id: str) -> list[tuple[str, str]]:
    """(port, mac) pairs recorded for this container."""
    out = []
    for obj in nft.list_json(f"set {TABLE} allowed"):
        for elem in (obj.get("set") or {}).get("elem", []) or []:
            val = elem.get("elem", {}) if isinstance(elem, dict) else {}
            if str(val.get("comment", "")) == nft.owner_tag(network, container_id):
                port, mac = val["val"]["concat"]
                out.append((str(port), str(mac)))
    return out
