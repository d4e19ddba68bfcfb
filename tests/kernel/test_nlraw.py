"""net/nlraw.py (net/nlencode.py's own encoders) sends what pyroute2's IPRoute would have sent: for
each request the agent makes on its hot path, the bytes of both (sequence number and port id aside) are equal, and both are
accepted by the kernel the same way — run in a scratch netns, one request at a time on each side.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.net import netns, nlencode, nlraw
from podnet.net.nlraw import RawRtnl
from tests.helpers.cni import netns_add, netns_del, unique


@pytest.fixture
def scratch() -> Iterator[str]:
    name = unique("pnt-nl-")
    netns_add(name)
    try:
        yield name
    finally:
        netns_del(name)


def _body(data: bytes) -> tuple[int, int, bytes]:
    """(type, flags, everything after the header) — seq and pid differ by design."""
    return int.from_bytes(data[4:6], "little"), int.from_bytes(data[6:8], "little"), data[16:]


def _pyroute2_bytes(ipr: Any, kind: str, command: str, args: tuple[Any, ...], kw: dict[str, Any]) -> bytes:
    import pyroute2.netlink.nlsocket as nlsocket
    captured: list[bytes] = []
    original = nlsocket.NetlinkRequest.prepare

    async def prepare(self: Any) -> Any:
        out = await original(self)
        captured.append(bytes(self.msg.data))
        return out

    nlsocket.NetlinkRequest.prepare = prepare  # type: ignore[method-assign]
    try:
        getattr(ipr, kind)(command, *args, **kw)
    finally:
        nlsocket.NetlinkRequest.prepare = original  # type: ignore[method-assign]
    return captured[-1]


def test_hot_path_requests_are_byte_for_byte_pyroute2s(scratch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyroute2 import IPRoute
    with netns.opened(f"/run/netns/{scratch}") as fd, netns.entered(fd):
        ipr = IPRoute()
        raw = RawRtnl()
        sent: list[bytes] = []
        real_send = raw.sock.send

        def send(data: bytes) -> int:
            sent.append(bytes(data))
            return real_send(data)

        raw.sock = type("S", (), {"send": staticmethod(send), "recv": raw.sock.recv, "close": raw.sock.close})()
        try:
            ipr.link("add", ifname="pnbr", kind="bridge")
            br = ipr.link_lookup(ifname="pnbr")[0]
            ipr.link("add", ifname="pnifb", kind="ifb")
            ifb = ipr.link_lookup(ifname="pnifb")[0]
            ipr.link("add", ifname="pnp0", kind="veth", peer={"ifname": "pnp1"}, master=br)
            port = ipr.link_lookup(ifname="pnp0")[0]
            # (kind, command, IPRoute.tc's positional arguments, keywords)
            cases: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = [
                ("link", "add", (), {"ifname": "pnv0", "kind": "veth", "peer": {"ifname": "pnv1", "flags": 1},
                                     "state": "up", "master": br, "mtu": 1400}),
                ("link", "add", (), {"ifname": "pnifb2", "kind": "ifb", "mtu": 1500, "state": "up"}),
                ("link", "get", (), {"ifname": "pnbr", "ext_mask": 8}),
                ("link", "set", (), {"index": br, "state": "up"}),
                ("link", "set", (), {"index": br, "flags": 0x100, "change": 0x100}),
                ("brport", "set", (), {"index": port, "mode": 1}),        # hairpin
                ("addr", "add", (), {"index": br, "address": "10.77.0.1", "prefixlen": 24}),
                ("addr", "add", (), {"index": br, "address": "fd77::1", "prefixlen": 64, "flags": 2}),
                ("route", "add", (), {"dst": "10.78.0.0/16", "gateway": "10.77.0.2", "oif": br,
                                      "metrics": {"RTAX_MTU": 1300}}),
                ("route", "replace", (), {"dst": "10.79.0.5/32", "oif": br, "scope": 253, "proto": 151}),
                ("route", "del", (), {"dst": "10.79.0.5/32", "scope": 255, "proto": 0, "oif": br}),
                ("neigh", "replace", (), {"ifindex": br, "dst": "10.77.0.9", "lladdr": "02:00:00:00:00:09",
                                          "state": 0x80}),
                ("tc", "replace", ("tbf", ifb, 0x10000), {"rate": "1000000bit", "burst": 12500, "latency": "25ms"}),
                # the second tbf (same parameters, another link) comes from nlencode's cache of the first
                ("tc", "replace", ("tbf", br, 0x10000), {"rate": "1000000bit", "burst": 12500, "latency": "25ms"}),
                ("tc", "add", ("ingress", br, 0xFFFF0000), {}),
                ("tc", "add-filter", ("u32", br), {"parent": 0xFFFF0000, "protocol": 3, "prio": 1, "target": 0x10001,
                                                   "keys": ["0x0/0x0+0"],
                                                   "action": {"kind": "mirred", "direction": "egress",
                                                              "action": "redirect", "ifindex": ifb}}),
            ]
            names = {br: "pnbr", ifb: "pnifb"}
            built_by_pyroute2: list[str] = []
            real_body = nlraw.pyroute2_body

            def counted(kind: str, command: str, kw: dict[str, Any]) -> bytes:
                built_by_pyroute2.append(f"{kind} {command} {kw.get('kind', '')}")
                return real_body(kind, command, kw)

            monkeypatch.setattr(nlraw, "pyroute2_body", counted)
            nlencode._TBF_CACHE.clear()
            for kind, command, args, kw in cases:
                theirs = _pyroute2_bytes(ipr, kind, command, args, dict(kw))
                undo(ipr, kind, command, args, kw, names)
                mine_kw = dict(kw)
                if kind == "tc":
                    mine_kw.update({"kind": args[0], "index": args[1], **({"handle": args[2]} if len(args) > 2 else {})})
                if kind == "brport":                 # IPRoute.brport("set") is a link change of kind bridge_slave
                    kind, mine_kw = "link", {"kind": "bridge_slave", **mine_kw}
                raw.request(kind, command, **mine_kw)
                assert _body(sent[-1]) == _body(theirs), (kind, command, kw)
            # every hot-path message built by nlencode, except the first tbf of its parameters
            assert built_by_pyroute2 == ["tc replace tbf"]
        finally:
            ipr.close()
            raw.close()


def undo(ipr: Any, kind: str, command: str, args: tuple[Any, ...], kw: dict[str, Any], names: dict[int, str]) -> None:
    """Take back what pyroute2's request made, so the same request by nlraw is accepted too."""
    if kind == "link" and command == "add":
        ipr.link("del", ifname=kw["ifname"])
    elif kind == "addr" and command == "add":
        ipr.addr("del", index=kw["index"], address=kw["address"], prefixlen=kw["prefixlen"])
    elif kind == "route" and command in ("add", "replace"):
        ipr.route("del", **kw)
    elif kind == "route" and command == "del":
        ipr.route("add", dst=kw["dst"], oif=kw["oif"], scope=253)
    elif kind == "tc" and command in ("replace", "add"):
        subprocess.run(["tc", "qdisc", "del", "dev", names[args[1]], "root" if args[0] == "tbf" else "ingress"],
                       capture_output=True)
    elif kind == "tc" and command == "add-filter":
        subprocess.run(["tc", "filter", "del", "dev", "pnbr", "parent", "ffff:"], capture_output=True)


def test_links_parsed_directly_equal_pyroute2s_decoding(scratch: str) -> None:
    """Rtnl.link() reads link replies without pyroute2's decoder: for links of every shape podnet
    looks up, the Link equals the one made from pyroute2's decoded message (whose kind-specific
    data Link.info carries only for macvlan, macvtap, vlan and ipvlan)."""
    import dataclasses

    from podnet.net.nlraw import INFO_KINDS as _INFO_KINDS
    from podnet.net.nlraw import link_from_msg as _link_from_msg
    from podnet.net.rtnl import RTEXT_FILTER_SKIP_STATS, open_rtnl
    other = unique("pnt-nl2-")
    netns_add(other)
    try:
        with netns.opened(f"/run/netns/{scratch}") as fd, netns.entered(fd), open_rtnl() as r, \
                netns.opened(f"/run/netns/{other}") as ofd:
            r.add_bridge("pnbr", mtu=1400)
            br = r.require_link("pnbr")
            r.add_veth("pnv0", "pnv1", ofd, mtu=1400, master=br.index, up=True)
            r.add_link("pnifb", "ifb")
            r.add_link("pnmv", "macvlan", link=r.require_link("pnifb").index, macvlan_mode="bridge")
            r.set_link(br.index, ifalias="podnet test bridge")
            r.set_promisc(r.require_link("pnifb").index, True)
            for name in ("pnbr", "pnv0", "pnifb", "pnmv", "lo"):
                direct = r.link(name)
                msg = r._raw.request("link", "get", ifname=name, ext_mask=RTEXT_FILTER_SKIP_STATS)[0]
                decoded = _link_from_msg(msg)
                if decoded.kind not in _INFO_KINDS:      # Link.info: only for the kinds whose data podnet reads
                    decoded = dataclasses.replace(decoded, info=())
                assert direct == decoded, name
                assert r.peer_netnsid(direct.index) == msg.get("IFLA_LINK_NETNSID"), name
            assert r.link("pnmv").info_value("IFLA_MACVLAN_MODE") == "bridge"
            assert r.link("pnbr").alias == "podnet test bridge" and r.link("pnifb").promisc
            assert r.link("nonesuch") is None
    finally:
        netns_del(other)
