"""The routing layer without a kernel: the backends (host-gw, vxlan) against a fake host, and the
reconcile loop against a fake datastore — join, passes on change, readiness, retries, stop."""
from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

from podnet.agent.routing import BACKENDS, Bgp, HostGw, NodeIdentity, Reconcile, RoutingAgent, Underlay, Vxlan
from podnet.agent.routing.vxlan import VXLAN_DEV, vtep_mac
from podnet.net.rtnl import PODNET_PROTO, RouteEntry
from tests.helpers.fakenet import FakeHost, FakePeers

ME = NodeIdentity("n1", ipaddress.ip_address("10.97.0.1"))


def nodes(**addrs: str) -> dict[str, dict[str, str]]:
    return {n: {"node": n, "addr": a} for n, a in addrs.items()}


def owners(**cidrs: str) -> dict[Any, str]:
    return {ipaddress.ip_network(c): n for n, c in cidrs.items()}


def test_host_gw_routes_other_nodes_blocks_via_their_address_and_nothing_of_its_own() -> None:
    host = FakeHost()
    r = HostGw(ME).apply(host, nodes(n1="10.97.0.1", n2="10.97.0.2", n3="10.97.0.3"),
                         owners(n1="10.244.0.0/26", n2="10.244.0.64/26", n3="10.244.0.128/26"))
    assert host.podnet_routes() == {"10.244.0.64/26": "10.97.0.2", "10.244.0.128/26": "10.97.0.3"}
    assert len(r.added) == 2 and not r.removed and not r.refused


def test_host_gw_refuses_a_next_hop_off_the_connected_networks_and_says_why() -> None:
    host = FakeHost()
    r = HostGw(ME).apply(host, nodes(n2="10.98.0.2"), owners(n2="10.244.1.0/24"))
    assert host.podnet_routes() == {}
    assert r.refused == ["10.244.1.0/24 via 10.98.0.2: next hop not on a directly connected network"]


def test_host_gw_removes_routes_of_a_node_that_left_and_follows_a_moved_block() -> None:
    host, gw = FakeHost(), HostGw(ME)
    gw.apply(host, nodes(n2="10.97.0.2", n3="10.97.0.3"), owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    r = gw.apply(host, nodes(n2="10.97.0.2", n3="10.97.0.3"), owners(n3="10.244.1.0/24"))
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.3"}
    assert "10.244.2.0/24 via 10.97.0.3" in r.removed and "10.244.1.0/24 via 10.97.0.3" in r.added


def test_routes_podnet_did_not_make_are_never_touched() -> None:
    host = FakeHost()
    foreign = ipaddress.ip_network("10.244.9.0/24")
    host.table[foreign] = RouteEntry(foreign, ipaddress.ip_address("10.97.0.9"), 2, 0, 254, 0, 4)   # static
    HostGw(ME).apply(host, nodes(n2="10.97.0.2"), owners(n2="10.244.1.0/24"))
    HostGw(ME).apply(host, {}, {})
    assert foreign in host.table and host.podnet_routes() == {}


def test_a_pass_dumps_each_family_in_use_once_and_both_on_the_first() -> None:
    for backend in (HostGw(ME), Vxlan(ME)):
        host = FakeHost(mtu=1500)
        backend.start(host)
        backend.apply(host, nodes(n2="10.97.0.2"), owners(n2="10.244.1.0/24"))
        assert sorted(host.dumps) == [4, 6]                    # the first pass: whatever a previous run left
        host.dumps.clear()
        backend.apply(host, nodes(n2="10.97.0.2"), owners(n2="10.244.1.0/24"))
        assert host.dumps == [4]                               # then: one dump, of the family in use


def test_a_failing_route_is_refused_and_the_others_still_go_in() -> None:
    host = FakeHost()
    host.fail_routes.add("10.244.1.0/24")
    r = HostGw(ME).apply(host, nodes(n2="10.97.0.2", n3="10.97.0.3"), owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    assert host.podnet_routes() == {"10.244.2.0/24": "10.97.0.3"}
    assert r.refused and "Network is unreachable" in r.refused[0]


def test_vxlan_makes_its_device_then_a_neighbour_fdb_entry_and_onlink_route_per_remote_node() -> None:
    host, vx = FakeHost(mtu=1500), Vxlan(ME, vni=7, port=4789)
    vx.start(host)
    dev = host.require_link(VXLAN_DEV)
    assert dev.kind == "vxlan" and dev.mtu == 1450 and dev.mac == vtep_mac("n1") and dev.up
    assert vx.publish() == {"vtep_mac": vtep_mac("n1")} and vx.pod_mtu(host) == 1450
    peers = {**nodes(n1="10.97.0.1"), "n2": {"node": "n2", "addr": "10.97.0.2", "vtep_mac": vtep_mac("n2")},
             "n3": {"node": "n3", "addr": "10.97.0.3"}}                           # n3 published no VTEP yet
    vx.apply(host, peers, owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    assert host.neighbours(dev.index) == {"10.97.0.2": vtep_mac("n2")}
    assert host.fdb_entries(dev.index) == {(vtep_mac("n2"), "10.97.0.2")}
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.2"}
    assert "add 10.244.1.0/24 via 10.97.0.2 onlink" in host.calls
    host.calls.clear()
    vx.apply(host, peers, owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))       # nothing changed:
    assert host.calls == []                                                      # nothing written
    vx.apply(host, nodes(n1="10.97.0.1"), {})                                    # n2 left
    assert host.neighbours(dev.index) == {} and host.fdb_entries(dev.index) == set() and host.podnet_routes() == {}


def test_vxlan_dual_stack_routes_an_ipv6_block_via_its_own_first_address() -> None:
    """The kernel refuses an IPv6 onlink gateway another route resolves elsewhere (the node's own
    fd97::/64 on its uplink: EINVAL, seen on the dual-stack lab) — so an IPv6 block goes via the
    block's first address, whose neighbour entry is the owner's VTEP MAC (flannel's way)."""
    host, vx = FakeHost(mtu=1500), Vxlan(ME)
    vx.start(host)
    dev = host.require_link(VXLAN_DEV)
    peers = {**nodes(n1="10.97.0.1"),
             "n2": {"node": "n2", "addr": "10.97.0.2", "addr6": "fd97::2", "vtep_mac": vtep_mac("n2")}}
    blocks = {ipaddress.ip_network("10.244.1.0/24"): "n2", ipaddress.ip_network("fd44:0:0:1::/64"): "n2"}
    r = vx.apply(host, peers, blocks)
    assert not r.refused, r.refused
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.2", "fd44:0:0:1::/64": "fd44:0:0:1::"}
    assert host.neighbours(dev.index) == {"10.97.0.2": vtep_mac("n2"), "fd44:0:0:1::": vtep_mac("n2")}
    assert host.fdb_entries(dev.index) == {(vtep_mac("n2"), "10.97.0.2")}, "one VTEP: the IPv4 tunnel"


def test_backends_are_chosen_by_name_from_one_map() -> None:
    assert BACKENDS == {"host-gw": HostGw, "vxlan": Vxlan, "bgp": Bgp, "underlay": Underlay}


class RecordingBackend:
    """A backend the loop has never heard of: it only records what it was asked."""
    name = "recording"

    def __init__(self) -> None:
        self.applied: list[tuple[set[str], set[str]]] = []
        self.started = self.stopped = 0
        self.changed = threading.Event()

    def start(self, host: Any) -> None:
        self.started += 1

    def publish(self) -> dict[str, str]:
        return {"as": "64512"}

    def apply(self, host: Any, nodes: dict[str, dict[str, str]], owners: dict[Any, str]) -> Reconcile:
        self.applied.append((set(nodes), {str(c) for c in owners}))
        self.changed.set()
        return Reconcile()

    def pod_mtu(self, host: Any) -> int:
        return 1400

    def stop(self) -> None:
        self.stopped += 1


def wait(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_the_loop_joins_with_the_backends_data_passes_on_every_change_and_is_ready_once() -> None:
    peers, backend, host = FakePeers("n1"), RecordingBackend(), FakeHost()
    ready: list[int] = []
    agent = RoutingAgent(peers, backend, "10.97.0.1", heartbeat=60, interval=60, host=host.opener(),
                         watch_kernel=lambda wake: (lambda: None), on_ready=lambda a: ready.append(a.pod_mtu()))
    agent.start()
    try:
        wait(lambda: agent.ready.is_set())
        assert peers.joined == [{"addr": "10.97.0.1", "backend": "recording", "as": "64512"}]
        assert ready == [1400] and backend.started == 1
        n = len(backend.applied)
        peers.set_node("n2", "10.97.0.2")
        peers.own("10.244.1.0/24", "n2")
        wait(lambda: backend.applied and backend.applied[-1] == ({"n1", "n2"}, {"10.244.1.0/24"}))
        assert len(backend.applied) <= n + 2, "a burst of two changes should coalesce into at most two passes"
        assert ready == [1400], "on_ready must run once"
    finally:
        agent.stop()
    assert backend.stopped == 1


def test_a_datastore_that_is_down_at_start_is_retried_and_readiness_hears_why() -> None:
    peers, backend = FakePeers("n1"), RecordingBackend()
    peers.fail_join = 2
    failures: list[str] = []
    agent = RoutingAgent(peers, backend, "10.97.0.1", heartbeat=60, interval=0.05, host=FakeHost().opener(),
                         watch_kernel=lambda wake: (lambda: None), on_fail=failures.append)
    agent.start()
    try:
        wait(lambda: agent.ready.is_set())
        assert failures == ["datastore unreachable"] * 2 and len(peers.joined) == 1
    finally:
        agent.stop()


def test_a_kernel_change_wakes_a_pass_and_the_periodic_pass_heartbeats() -> None:
    peers, backend = FakePeers("n1"), RecordingBackend()
    kernel_wakes: list[Any] = []
    agent = RoutingAgent(peers, backend, "10.97.0.1", heartbeat=0.05, interval=60, host=FakeHost().opener(),
                         watch_kernel=lambda wake: kernel_wakes.append(wake) or (lambda: None))
    agent.start()
    try:
        wait(lambda: agent.ready.is_set())
        n = agent.passes
        kernel_wakes[0]()                                   # a podnet route was deleted by hand
        wait(lambda: agent.passes > n)
        wait(lambda: peers.heartbeats >= 2)
    finally:
        agent.stop()


def test_stopping_leaves_the_routes_in_place() -> None:
    peers, host = FakePeers("n1"), FakeHost()
    peers.set_node("n2", "10.97.0.2")
    peers.own("10.244.1.0/24", "n2")
    agent = RoutingAgent(peers, HostGw(ME), "10.97.0.1", heartbeat=60, interval=60, host=host.opener(),
                         watch_kernel=lambda wake: (lambda: None))
    agent.start()
    wait(lambda: agent.ready.is_set())
    agent.stop()
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.2"}
    assert all(r.proto == PODNET_PROTO for r in host.table.values() if str(r.dst) == "10.244.1.0/24")


def test_a_node_that_encrypts_is_unreachable_from_one_that_does_not_never_plaintext() -> None:
    """Mixed cluster: the encrypting node's pods get an unreachable route (not the default route,
    not a plaintext next hop), the reason is in every pass; when it stops encrypting the normal
    route replaces the unreachable one in place."""
    host, gw = FakeHost(), HostGw(ME)
    infos = nodes(n2="10.97.0.2", n3="10.97.0.3")
    infos["n3"]["wg_pubkey"] = "k" * 43 + "="
    r = gw.apply(host, infos, owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.2", "10.244.2.0/24": "unreachable"}
    assert r.refused == ["10.244.2.0/24: node n3 encrypts pod traffic (WireGuard) and this node does not: "
                         "unreachable, not plaintext"]
    again = gw.apply(host, infos, owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    assert again.refused == r.refused and not again.added and not again.removed     # reported, not rewritten
    del infos["n3"]["wg_pubkey"]
    r = gw.apply(host, infos, owners(n2="10.244.1.0/24", n3="10.244.2.0/24"))
    assert host.podnet_routes() == {"10.244.1.0/24": "10.97.0.2", "10.244.2.0/24": "10.97.0.3"}
    assert not r.removed and not r.refused, "the replaced route must not be deleted after the replace"
    gw.apply(host, {}, {})
    assert host.podnet_routes() == {}


def test_vxlan_refuses_an_encrypting_node_too() -> None:
    host = FakeHost(mtu=1500)
    infos = nodes(n2="10.97.0.2")
    infos["n2"].update(vtep_mac=vtep_mac("n2"), wg_pubkey="k" * 43 + "=")
    Vxlan(ME).apply(host, infos, owners(n2="10.244.1.0/24"))
    assert host.podnet_routes() == {"10.244.1.0/24": "unreachable"}


class RequestBackend(RecordingBackend):
    """Knows one request, which changes what it publishes (as a key rotation does)."""
    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.key = "k1"

    def publish(self) -> dict[str, str]:
        return {"key": self.key}

    def request(self, name: str) -> bool:
        if name == "rotate-key":
            self.key = "k2"
            return True
        return False


def test_an_operator_request_is_handled_once_and_the_new_data_published_at_once() -> None:
    peers, backend = FakePeers("n1"), RequestBackend()
    agent = RoutingAgent(peers, backend, "10.97.0.1", heartbeat=60, interval=60, host=FakeHost().opener(),
                         watch_kernel=lambda wake: (lambda: None))
    agent.start()
    try:
        wait(lambda: agent.ready.is_set())
        assert peers.joined[-1]["key"] == "k1"
        peers.ask("rotate-key")
        peers.ask("no-such-request")
        wait(lambda: peers.joined[-1]["key"] == "k2" and not peers.pending)
        assert [j["key"] for j in peers.joined] == ["k1", "k2"]
    finally:
        agent.stop()
