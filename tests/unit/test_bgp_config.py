"""What a node's BIRD is told (agent/routing/birdconf.py, bgp.py's choice of neighbours), and the
check that keeps a configuration BIRD would refuse away from the running BIRD — with the real
`bird -p` parser when BIRD 2 is installed."""
from __future__ import annotations

import ipaddress
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from podnet.agent.config import ConfigError, NodeConfig
from podnet.agent.routing.base import NodeIdentity
from podnet.agent.routing.bgp import Bgp, parse_peer
from podnet.agent.routing.birdconf import BGP_TABLE, BirdView, Neighbour, render
from podnet.net.birdc import Protocol
from podnet.net.rtnl import RouteEntry
from tests.helpers.fakenet import FakeHost

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (apt install bird2)")


def nodes(n: int, rr: tuple[int, ...] = ()) -> dict[str, dict[str, str]]:
    return {f"n{i}": {"node": f"n{i}", "addr": f"10.97.0.{i}", "bgp_as": "64512", **({"bgp_rr": "1"} if i in rr else {})}
            for i in range(1, n + 1)}


def backend(tmp_path: Path, me: int = 1, **kw: object) -> Bgp:
    return Bgp(NodeIdentity(f"n{me}", ipaddress.ip_address(f"10.97.0.{me}")), str(tmp_path), **kw)  # type: ignore[arg-type]


def test_a_mesh_peers_with_every_other_node_and_the_external_peers(tmp_path: Path) -> None:
    b = backend(tmp_path, peers=("10.97.0.253/64600/s3cret",))
    v = b._view(nodes(4), [ipaddress.ip_network("10.244.0.0/26")])
    assert [(n.name, n.addr, n.asn, n.rr_client) for n in v.neighbours] == [
        ("node_n2", "10.97.0.2", 64512, False), ("node_n3", "10.97.0.3", 64512, False),
        ("node_n4", "10.97.0.4", 64512, False), ("peer_10_97_0_253", "10.97.0.253", 64600, False)]
    text = render(v)
    assert "route 10.244.0.0/26 blackhole;" in text and 'password "s3cret";' in text
    assert "kernel table 201;" in text and "graceful restart on;" in text
    assert "bgp_next_hop = 10.97.0.1" in text and "if net.len = 0 then reject;" in text


def test_with_reflectors_clients_peer_only_with_them_and_reflectors_with_everyone(tmp_path: Path) -> None:
    client = backend(tmp_path / "c", me=3)._view(nodes(6, rr=(1, 2)), [])
    assert [n.addr for n in client.neighbours] == ["10.97.0.1", "10.97.0.2"]
    assert not any(n.rr_client for n in client.neighbours)
    rr = backend(tmp_path / "r", me=1, route_reflector=True)._view(nodes(6, rr=(1, 2)), [])
    assert {n.addr: n.rr_client for n in rr.neighbours} == {"10.97.0.2": False, "10.97.0.3": True, "10.97.0.4": True,
                                                          "10.97.0.5": True, "10.97.0.6": True}
    assert "rr client;" in render(rr) and "export filter podnet_reflect" in render(rr)


def test_the_same_cluster_renders_byte_for_byte_the_same(tmp_path: Path) -> None:
    b = backend(tmp_path)
    own = [ipaddress.ip_network("10.244.0.0/26")]
    assert render(b._view(nodes(5), own)) == render(b._view(dict(reversed(list(nodes(5).items()))), own))


def test_a_node_record_with_an_impossible_as_is_left_out_with_the_reason(tmp_path: Path) -> None:
    b = backend(tmp_path)
    infos = nodes(3)
    infos["n3"]["bgp_as"] = str(2 ** 33)
    v = b._view(infos, [])
    assert [n.addr for n in v.neighbours] == ["10.97.0.2"] and "node n3" in b.skipped[0]


@pytest.mark.parametrize("text", ["10.0.0.1", "10.0.0.1/x", "nonsense/64512", "10.0.0.1/0", "10.0.0.1/4294967296"])
def test_a_bad_peer_is_refused_naming_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="ADDR/AS"):
        parse_peer(text)
    with pytest.raises(ConfigError, match="bgp-peers"):
        NodeConfig.load("", {"routing": "bgp", "bgp_peers": [text]})


def test_peers_parse_with_and_without_a_password() -> None:
    assert parse_peer("fd00::1/65000").addr == "fd00::1"
    assert parse_peer("10.0.0.1/65000/a/b").password == "a/b"


def test_no_nat_cidrs_must_be_cluster_cidrs() -> None:
    with pytest.raises(ConfigError, match="no-nat-cidr"):
        NodeConfig.load("", {"routing": "bgp", "cluster_cidr": ["10.244.0.0/16"], "no_nat_cidr": ["10.1.0.0/16"]})


@needs_bird
def test_every_render_is_one_bird_accepts(tmp_path: Path) -> None:
    for me, rr in ((1, ()), (1, (1, 2)), (4, (1, 2))):
        b = backend(tmp_path / f"{me}{rr}", me=me, route_reflector=me in rr, peers=("10.97.0.253/64600/pw",))
        (tmp_path / f"{me}{rr}" / "bird").mkdir(parents=True)
        view = b._view(nodes(6, rr), [ipaddress.ip_network("10.244.0.0/26"), ipaddress.ip_network("10.244.1.0/26")])
        assert b._check(render(view)), b.config_error


@needs_bird
def test_a_render_bird_refuses_is_kept_away_from_the_running_config(tmp_path: Path) -> None:
    b = backend(tmp_path)
    (tmp_path / "bird").mkdir()
    good = render(b._view(nodes(2), []))
    (tmp_path / "bird" / "bird.conf").write_text(good)
    bad = BirdView("10.97.0.1", 64512, (), (Neighbour("node_x", "10.97.0.9", 2 ** 33),))
    assert not b._check(render(bad))
    assert "bird.conf.new" in b.config_error or "line" in b.config_error, b.config_error
    assert (tmp_path / "bird" / "bird.conf").read_text() == good


class HostWithBgpTable(FakeHost):
    """The fake host plus BIRD's kernel table (what BIRD has learned)."""

    def __init__(self) -> None:
        super().__init__()
        self.bgp: dict[Any, RouteEntry] = {}

    def routes(self, family: int, table: int | None = 254) -> list[RouteEntry]:
        if table == BGP_TABLE:
            return [r for r in self.bgp.values() if r.dst.version == family]
        return super().routes(family, table)

    def learn(self, cidr: str, gw: str) -> None:
        dst = ipaddress.ip_network(cidr)
        self.bgp[dst] = RouteEntry(dst, ipaddress.ip_address(gw), 2, 0, BGP_TABLE, 0, 12)


def test_after_a_bird_restart_routes_stay_until_every_block_is_relearned(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A session is Established a moment before its peer's updates arrive: until every other
    node's block is back in BIRD's table, what it had taught stays (then the mirror is strict)."""
    b = backend(tmp_path)
    monkeypatch.setattr(b, "_bird", lambda view: True)        # BIRD runs (its pid is tracked by hand below)
    monkeypatch.setattr(b.birdc, "protocols", lambda: {
        f"node_n{i}": Protocol(f"node_n{i}", "BGP", "up", "now", "Established") for i in (2, 3)})

    def bird_restarted() -> None:                 # what _bird notes when it sees a new pid
        b._since, b._is_settled = time.monotonic(), False

    n2, n3 = "10.244.0.64/26", "10.244.0.128/26"
    own = {ipaddress.ip_network("10.244.0.0/26"): "n1", ipaddress.ip_network(n2): "n2", ipaddress.ip_network(n3): "n3"}
    host = HostWithBgpTable()
    host.learn(n2, "10.97.0.2")
    host.learn(n3, "10.97.0.3")
    bird_restarted()
    b.apply(host, nodes(3), own)
    assert host.podnet_routes() == {n2: "10.97.0.2", n3: "10.97.0.3", "10.244.0.0/26": "None"}
    # BIRD restarts: its table starts empty; the sessions come back before the updates do
    host.bgp = {}
    bird_restarted()
    host.learn(n3, "10.97.0.3")
    b.apply(host, nodes(3), own)
    assert n2 in host.podnet_routes(), "n2's route dropped while BIRD was still relearning it"
    host.learn(n2, "10.97.0.2")
    b.apply(host, nodes(3), own)
    del host.bgp[ipaddress.ip_network(n2)]       # relearned, then withdrawn for real: it goes
    b.apply(host, nodes(3), own)
    assert host.podnet_routes() == {n3: "10.97.0.3", "10.244.0.0/26": "None"}
