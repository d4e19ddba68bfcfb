"""An underlay for macvlan/ipvlan pods: `umaster` (up, in the sandbox standing in for the node)
wired by a veth to a netns of its own holding UNDERLAY_PEER/24 (another machine on that wire)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import netns_add, netns_del, nsexec, unique

UNDERLAY_PEER = "10.79.0.250"


@pytest.fixture
def underlay(sandbox: str) -> Iterator[str]:
    """`umaster` (up, in the sandbox) wired to a netns holding UNDERLAY_PEER/24."""
    peer_ns = unique("pnt-u-")
    netns_add(peer_ns)
    try:
        nsexec(sandbox, "ip", "link", "add", "umaster", "type", "veth", "peer", "name", "upeer")
        nsexec(sandbox, "ip", "link", "set", "upeer", "netns", peer_ns)
        nsexec(sandbox, "ip", "link", "set", "umaster", "up")
        nsexec(peer_ns, "ip", "addr", "add", f"{UNDERLAY_PEER}/24", "dev", "upeer")
        nsexec(peer_ns, "ip", "link", "set", "upeer", "up")
        yield peer_ns
    finally:
        netns_del(peer_ns)


def macvlan_conf(tmp_path: Path, run_mode: dict[str, str], version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "kmv", "type": "podnet-macvlan", "master": "umaster", "mode": "bridge",
            "ipam": {"type": "podnet-host-local", "subnet": "10.79.0.0/24", "rangeStart": "10.79.0.10",
                     "rangeEnd": "10.79.0.200", "dataDir": str(tmp_path / "ipam")}, **run_mode, **extra}
