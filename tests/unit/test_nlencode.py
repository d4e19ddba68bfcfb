"""net/nlencode.py builds the same bytes as pyroute2's encoder for every request shape a pod's
path sends, and declines (None: pyroute2 builds it) whatever it does not know — so switching the
encoder changes no request.  (tests/kernel/test_nlraw.py holds the sent bytes equal to IPRoute's.)
"""
from __future__ import annotations

from typing import Any

import pytest

from podnet.net import nlencode
from podnet.net.nlraw import pyroute2_body

PEER = {"ifname": "eth0", "net_ns_fd": 5, "address": "02:00:00:00:00:02", "flags": 1, "mtu": 1400}
MIRRED = {"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": 9}
U32 = {"kind": "u32", "index": 7, "parent": 0xFFFF0000, "protocol": 3, "prio": 1, "target": 0x10001,
       "keys": ["0x0/0x0+0"], "action": MIRRED}
TBF = {"kind": "tbf", "index": 7, "handle": 0x10000, "rate": "1000000bit", "burst": 12500, "latency": "25ms"}

# (kind, command, keywords) — each shape the agent's bridge/ptp + bandwidth + tuning path sends
SHAPES: list[tuple[str, str, dict[str, Any]]] = [
    ("link", "get", {"ifname": "cnibr0", "ext_mask": 8}),
    ("link", "get", {"index": 7, "ext_mask": 8}),
    ("link", "set", {"index": 7, "state": "up"}),
    ("link", "set", {"index": 7, "group": 0x5E000001}),
    ("link", "set", {"index": 7, "flags": 0x100, "change": 0x100}),
    ("link", "set", {"index": 7, "flags": 0, "change": 0x200}),
    ("link", "set", {"index": 7, "mtu": 1400}),
    ("link", "set", {"index": 7, "master": 3}),
    ("link", "set", {"index": 7, "address": "0a:58:0a:01:02:03"}),
    ("link", "set", {"index": 7, "kind": "bridge_slave", "mode": 1}),
    ("link", "set", {"index": 7, "kind": "bridge_slave", "mode": 0}),
    ("link", "del", {"index": 7}),
    ("link", "del", {"group": 0x5E000001}),
    ("link", "add", {"ifname": "pnifb1", "kind": "ifb", "mtu": 1500, "state": "up"}),
    ("link", "add", {"ifname": "veth1", "kind": "veth", "peer": dict(PEER), "address": "02:00:00:00:00:01",
                     "master": 3, "state": "up", "mtu": 1400}),
    ("link", "add", {"ifname": "veth1", "kind": "veth", "peer": {"ifname": "eth0", "net_ns_fd": 5}}),
    ("link", "add", {"mtu": 9000, "kind": "veth", "peer": {"mtu": 9000, "ifname": "e", "net_ns_fd": 4},
                     "ifname": "v"}),
    ("addr", "add", {"index": 7, "address": "10.1.2.3", "prefixlen": 24}),
    ("addr", "add", {"index": 7, "address": "fd00::3", "prefixlen": 64}),
    ("addr", "add", {"index": 7, "address": "fd00::3", "prefixlen": 64, "flags": 2}),
    ("addr", "replace", {"index": 7, "address": "10.1.2.3", "prefixlen": 32}),
    ("addr", "del", {"index": 7, "address": "10.1.2.3", "prefixlen": 24}),
    ("addr", "del", {"index": 7, "address": "fd00::3", "prefixlen": 64}),
    ("route", "replace", {"dst": "10.1.2.0/24", "gateway": "10.1.2.1", "oif": 7}),
    ("route", "add", {"dst": "10.1.2.3/32", "oif": 7, "prefsrc": "10.1.2.1", "scope": 253}),
    ("route", "replace", {"dst": "10.1.2.3/32", "oif": 7, "scope": 253}),
    ("route", "add", {"dst": "0.0.0.0/0", "gateway": "10.1.2.1", "oif": 7}),
    ("route", "add", {"dst": "::/0", "gateway": "fd00::1", "oif": 7}),
    ("route", "add", {"dst": "fd00::/64", "gateway": "fd00::1", "oif": 7, "table": 100, "priority": 5,
                      "metrics": {"RTAX_MTU": 1300, "RTAX_ADVMSS": 1260}}),
    ("route", "add", {"dst": "10.9.0.0/16", "gateway": "10.1.2.1", "table": 1000}),
    ("route", "add", {"dst": "10.9.0.0/16", "gateway": "10.1.2.1", "oif": 7, "flags": 4}),
    ("route", "replace", {"dst": "10.9.0.0/16", "type": 6}),
    ("route", "add", {"dst": "10.9.0.0/16", "oif": 7, "proto": 151}),
    ("route", "del", {"dst": "10.1.2.3/32", "scope": 255, "proto": 0, "oif": 7}),
    ("route", "del", {"dst": "10.1.2.0/24", "scope": 255, "proto": 0, "gateway": "10.1.2.1", "table": 100}),
    ("neigh", "replace", {"ifindex": 7, "dst": "10.1.2.9", "lladdr": "02:00:00:00:00:09", "state": 0x80}),
    ("neigh", "replace", {"ifindex": 7, "dst": "fd00::9", "lladdr": "02:00:00:00:00:09", "state": 0x80}),
    ("tc", "add", {"kind": "ingress", "index": 7, "handle": 0xFFFF0000}),
    ("tc", "add-filter", dict(U32)),
]


def _with_route_defaults(kind: str, command: str, kw: dict[str, Any]) -> dict[str, Any]:
    out = dict(kw)
    if kind == "route" and command in ("add", "replace"):       # as nlraw.request_bytes does for both paths
        out["proto"] = out.get("proto") or "static"
        out["type"] = out.get("type") or "unicast"
    return out


@pytest.mark.parametrize(("kind", "command", "kw"), SHAPES, ids=[f"{k}-{c}-{i}" for i, (k, c, _) in enumerate(SHAPES)])
def test_our_bytes_are_pyroute2s(kind: str, command: str, kw: dict[str, Any]) -> None:
    kw = _with_route_defaults(kind, command, kw)
    ours = nlencode.encode(kind, command, dict(kw))
    assert ours is not None, "a hot-path shape fell back to pyroute2"
    assert ours.hex() == pyroute2_body(kind, command, dict(kw)).hex()


def test_tbf_reuses_pyroute2s_encoding_with_the_pods_ifindex() -> None:
    other_rate = dict(TBF, rate="5000000bit", index=11)
    assert nlencode.encode("tc", "replace", dict(other_rate)) is None      # not seen yet: pyroute2 builds it
    nlencode.remember_tbf(other_rate, pyroute2_body("tc", "replace", dict(other_rate)))
    for index in (7, 12, 4000):
        kw = dict(other_rate, index=index)
        assert nlencode.encode("tc", "replace", dict(kw)) == pyroute2_body("tc", "replace", dict(kw))
    assert nlencode.encode("tc", "replace", dict(TBF, burst=1)) is None     # other parameters: other bytes


@pytest.mark.parametrize(("kind", "command", "kw"), [
    ("link", "add", {"ifname": "br0", "kind": "bridge", "br_vlan_filtering": 1}),
    ("link", "add", {"ifname": "mv0", "kind": "macvlan", "link": 3, "macvlan_mode": "bridge"}),
    ("link", "set", {"index": 7, "state": "down"}),
    ("link", "set", {"index": 7, "kind": "bridge_slave", "cost": 200}),
    ("link", "set", {"index": 7, "kind": "bridge_slave", "mode": 256}),
    ("link", "set", {"index": 7, "mode": 1}),
    ("link", "set", {"index": 7, "ifalias": "x"}),
    ("link", "set", {"index": "7"}),
    ("link", "add", {"ifname": "v", "kind": "veth", "peer": "eth0"}),
    ("addr", "add", {"index": 7, "address": "10.1.2.3", "prefixlen": 24, "flags": 2}),
    ("addr", "add", {"index": 7, "address": "10.1.2.3", "prefixlen": 24, "broadcast": "10.1.2.255"}),
    ("route", "get", {"dst": "10.1.2.3"}),
    ("route", "add", {"dst": "10.1.2.0/24", "gateway": "fd00::1"}),
    ("route", "add", {"dst": "10.1.2.0/24", "multipath": [{"gateway": "10.0.0.1"}]}),
    ("neigh", "del", {"ifindex": 7, "dst": "10.1.2.9"}),
    ("tc", "add-filter", dict(U32, keys=["0x800/0xffff+12"])),
    ("tc", "add-filter", dict(U32, action=dict(MIRRED, direction="ingress"))),
    ("tc", "add", {"kind": "htb", "index": 7, "handle": 0x10000}),
    ("rule", "add", {"table": 100}),
])
def test_unknown_shapes_are_left_to_pyroute2(kind: str, command: str, kw: dict[str, Any]) -> None:
    assert nlencode.encode(kind, command, _with_route_defaults(kind, command, kw)) is None
