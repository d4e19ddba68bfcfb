"""--routing bgp on the virtual cluster: a real BIRD 2 per node (started by its agent), a real
BIRD as the top-of-rack router (dynamic BGP, AS 64600) with an external host behind it on a
subnet only BGP tells the nodes about.  Routes are read from the kernels (each node's main
table, the ToR's), traffic is real (ICMP and TCP from inside the namespaces), and the external
host checks the source address it sees (no NAT)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podnet.demo import DEMO_PORT, _check_external, _listen_in
from podnet.lab import TOR_ADDR, Cluster
from podnet.lab.continuity import Pinger
from podnet.net import probe
from tests.helpers.etcd import have_etcd
from tests.helpers.load import condition, load_conditions

pytestmark = [
    pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (apt install bird2)"),
]


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - t0


def block_of(lab: Cluster, i: int) -> str:
    import ipaddress
    ip = next(p.ip for p in lab.pods if p.node == i)
    return str(ipaddress.ip_network(f"{ip}/{lab.block_prefix}", strict=False))


def doctor(lab: Cluster, i: int) -> list[dict[str, str]]:
    return list(json.loads(lab.on_node(i, "doctor", "--socket", lab.sock(i), "--bin-dir", lab.bin_dir, "--json",
                                       check=False)))


def sessions(lab: Cluster, i: int) -> dict[str, str]:
    rows = json.loads(lab.on_node(i, "node", "--etcd", lab.etcd_url, "--json", "ls", "--agent-socket", lab.sock(i)))
    return {r["node"]: r["bgp_session"] for r in rows if r["bgp_session"]}


def bird_status(lab: Cluster, i: int) -> dict[str, Any]:
    from podnet.net.birdc import Birdc
    b = Birdc(os.path.join(lab.work, f"n{i + 1}", "state", "bird", "bird.ctl"))
    return {p.name: p for p in b.protocols().values() if p.proto == "BGP"}


def established(lab: Cluster, i: int, proto: str) -> bool:
    """Node i's BIRD answers and has that session Established (False while it is restarting)."""
    from podnet.net.birdc import BirdError
    try:
        p = bird_status(lab, i).get(proto)
    except BirdError:
        return False
    return p is not None and p.info.startswith("Established")


def bird_pid(lab: Cluster, i: int) -> int:
    line = next(f["detail"] for f in doctor(lab, i) if f["check"] == "bgp")
    return int(line.split("(pid ")[1].split(")")[0])


def converged(lab: Cluster) -> bool:
    """Every node routes every other node's block via that node, its own as a blackhole, and the
    external subnet via the ToR; the ToR holds every block."""
    blocks = {i: block_of(lab, i) for i in lab.live}
    for i in lab.live:
        r = lab.podnet_routes(i)
        if any(r.get(blocks[j]) != f"10.97.0.{j + 1}" for j in lab.live if j != i) or r.get(blocks[i]) != "":
            return False
        if "peer" not in json.dumps(lab.node_settings.get(i, {})) and r.get("10.98.0.0/24") != TOR_ADDR:
            return False                                     # the external subnet, learned from the ToR
    tor = lab.tor_routes()
    return all(tor.get(blocks[j]) == f"10.97.0.{j + 1}" for j in lab.live)


@pytest.fixture
def mesh() -> Iterator[Cluster]:
    lab = Cluster(4, "bgp", lease_ttl=3)
    lab.node_settings[3] = {"drain-on-stop": True}          # n4 leaves gracefully below
    try:
        lab.up()
        for i in range(4):
            lab.add_pod(i)
        wait_for(lambda: converged(lab), 30, "BGP convergence")
        yield lab
    finally:
        lab.down()


def test_a_full_mesh_routes_every_block_without_nat_and_withdraws_a_leaving_node(mesh: Cluster,
                                                                                 record_property: Any) -> None:
    lab = mesh
    for i in range(4):
        routes = lab.podnet_routes(i)
        remote = [d for d, gw in routes.items() if gw.startswith("10.97.0.") and gw != TOR_ADDR]
        assert len(remote) == 3, routes                                # exactly N-1 remote blocks
        assert routes[block_of(lab, i)] == "" and routes["10.98.0.0/24"] == TOR_ADDR
    pods = lab.pods
    for a in pods:
        for b in pods:
            if a.node != b.node:
                assert probe.ping(a.netns, b.ip), f"{a.ip} -> {b.ip}"
    listeners = [_listen_in(p.netns, DEMO_PORT) for p in pods]      # what the external host connects to
    try:
        assert _check_external(lab)                                    # ToR, external host both ways, no NAT
    finally:
        for s in listeners:
            s.close()
    assert all(f["level"] == "ok" for f in doctor(lab, 0) if f["check"].startswith("bgp")), doctor(lab, 0)
    assert sessions(lab, 0) == {"n2": "Established", "n3": "Established", "n4": "Established",
                                f"peer {TOR_ADDR}": "Established"}

    gone = block_of(lab, 3)                                            # n4: SIGTERM with drain-on-stop
    t0 = time.monotonic()
    lab.kill_agent(3, signal.SIGTERM)
    took = wait_for(lambda: all(gone not in lab.podnet_routes(i) for i in range(3)) and gone not in lab.tor_routes(),
                    30, "n4's block withdrawn everywhere")
    record_property("graceful_leave_withdrawn_s", round(took, 3))
    print(f"graceful leave (drain on stop): withdrawn from 3 nodes and the ToR in {took:.2f}s")
    assert took < 5, f"a draining node's routes took {took:.1f}s to go"
    assert time.monotonic() - t0 < 10


def test_a_killed_node_s_routes_go_after_the_hold_time(mesh: Cluster, record_property: Any) -> None:
    lab = mesh
    gone = block_of(lab, 2)
    t0 = time.monotonic()
    lab.kill_agent(2)                                 # the machine dies: agent, BIRD and all
    lab.remove_node_namespaces(2)
    nodes_t = wait_for(lambda: all(gone not in lab.podnet_routes(i) for i in (0, 1, 3)), 60, "nodes drop it")
    tor_t = wait_for(lambda: gone not in lab.tor_routes(), 60, "the ToR drops it") + nodes_t
    record_property("killed_node_nodes_s", round(nodes_t, 2))
    record_property("killed_node_tor_s", round(tor_t, 2))
    print(f"killed node: gone from the nodes after {nodes_t:.1f}s (lease {lab.lease_ttl}s, hold {lab.bgp_hold_time}s), "
          f"from the ToR after {time.monotonic() - t0:.1f}s (hold {lab.bgp_hold_time}s + graceful restart "
          f"{lab.bgp_gr_time}s: it may be restarting)")
    assert nodes_t <= lab.bgp_hold_time + 3
    assert time.monotonic() - t0 <= lab.bgp_hold_time + lab.bgp_gr_time + 5


def test_route_reflectors_six_nodes_two_reflectors() -> None:
    lab = Cluster(6, "bgp", lease_ttl=3)
    lab.node_settings[0] = lab.node_settings[1] = {"bgp-route-reflector": True}
    try:
        lab.up()
        for i in range(6):
            lab.add_pod(i)
        wait_for(lambda: converged(lab), 40, "BGP convergence through the reflectors")
        for i in range(6):
            routes = lab.podnet_routes(i)
            assert len([d for d, gw in routes.items() if gw.startswith("10.97.0.") and gw != TOR_ADDR]) == 5, routes
        for i in (2, 3, 4, 5):                                  # clients peer with the reflectors (and the ToR) only
            assert set(sessions(lab, i)) == {"n1", "n2", f"peer {TOR_ADDR}"}
        assert set(sessions(lab, 0)) == {"n2", "n3", "n4", "n5", "n6", f"peer {TOR_ADDR}"}
        assert all(s == "Established" for i in range(6) for s in sessions(lab, i).values())
        assert probe.ping(lab.pods[2].netns, lab.pods[5].ip) and probe.ping(lab.pods[5].netns, lab.pods[3].ip)
    finally:
        lab.down()


@pytest.fixture
def pair() -> Iterator[Cluster]:
    lab = Cluster(2, "bgp", lease_ttl=3)
    try:
        lab.up()
        lab.add_pod(0)
        lab.add_pod(1)
        wait_for(lambda: converged(lab), 30, "BGP convergence")
        yield lab
    finally:
        lab.down()


@pytest.mark.parametrize("machine", load_conditions())
def test_bird_killed_is_restarted_and_graceful_restart_loses_no_probe(pair: Cluster, machine: str) -> None:
    """Also with every core busy (issue 34)."""
    lab = pair
    a, b = lab.pods
    old = bird_pid(lab, 0)
    with condition(machine), Pinger(a.netns, b.ip) as pinger:
        time.sleep(0.3)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: bird_pid(lab, 0) not in (0, old), 15, "BIRD restarted by the agent")
        wait_for(lambda: established(lab, 0, "node_n2"), 30, "session back")
        time.sleep(0.5)
    r = pinger.stop()
    assert r.sent > 20 and r.lost == 0, f"{r.lost} of {r.sent} probes lost while BIRD restarted"
    assert "-R" in open(f"/proc/{bird_pid(lab, 0)}/cmdline").read().split("\0"), "not restarted in graceful recovery"
    assert converged(lab)


def test_an_agent_restart_does_not_flap_sessions(pair: Cluster) -> None:
    lab = pair
    before, pid = bird_status(lab, 1)["node_n1"], bird_pid(lab, 0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        lab.kill_agent(0, sig)
        lab.start_agent(0)
        wait_for(lambda: any(f["check"] == "bgp" for f in doctor(lab, 0)), 10, "the agent answering")
    assert bird_pid(lab, 0) == pid, "the agent started a new BIRD instead of adopting the running one"
    after = bird_status(lab, 1)["node_n1"]
    assert after.since == before.since and after.info.startswith("Established"), (before, after)


def test_bad_peers_are_reported_and_the_other_sessions_stay_up() -> None:
    lab = Cluster(2, "bgp", lease_ttl=3)
    lab.node_settings[0] = {"bgp-peers": [f"{TOR_ADDR}/64999"]}                 # wrong AS for the ToR
    lab.node_settings[1] = {"bgp-peers": [f"{TOR_ADDR}/64600", "10.97.0.250/64700"]}  # nobody at .250
    try:
        lab.up()
        a, b = lab.add_pod(0), lab.add_pod(1)
        wait_for(lambda: block_of(lab, 1) in lab.podnet_routes(0) and block_of(lab, 0) in lab.podnet_routes(1), 30,
                 "node-to-node routes")
        assert probe.ping(a.netns, b.ip)

        def failing(i: int) -> list[str]:
            return [f["detail"] for f in doctor(lab, i) if f["check"] == "bgp session" and f["level"] == "fail"]
        wait_for(lambda: any(TOR_ADDR in d for d in failing(0)), 20, "n1 reports the ToR session")
        wait_for(lambda: any("10.97.0.250" in d for d in failing(1)), 20, "n2 reports the missing peer")
        assert not any("n2" in d for d in failing(0)) and sessions(lab, 1)[f"peer {TOR_ADDR}"] == "Established"
        print("n1:", failing(0), "n2:", failing(1))
    finally:
        lab.down()


def test_a_node_record_bird_cannot_take_is_left_out_with_the_reason(pair: Cluster) -> None:
    """A node publishing an impossible AS is not rendered (the others' sessions go on); the agent
    says why."""
    lab = pair
    # written from the fabric by another process: gRPC's threads made in this one while it stood
    # in a lab's netns would stay there, and every later etcd client of this process would dial
    # that (soon deleted) namespace's loopback
    code = ("import sys; from podnet.ipam.cluster import ClusterIpam; from podnet.ipam.etcdkv import EtcdKV; "
            "from podnet.ipam.registry import NodeRegistry; kv = EtcdKV([sys.argv[1]]); "
            "NodeRegistry(ClusterIpam(kv, node='bogus')).register(30, {'addr': '10.97.0.77', 'backend': 'bgp', "
            "'bgp_as': str(2 ** 33)}); kv.close()")
    subprocess.run(["ip", "netns", "exec", lab.fab, sys.executable, "-c", code, lab.etcd_url], check=True)
    wait_for(lambda: "node bogus: its record has no usable address or AS" in lab.agent_log(0), 10, "the reason logged")
    assert bird_status(lab, 0)["node_n2"].info.startswith("Established") and "node_bogus" not in bird_status(lab, 0)
    assert probe.ping(lab.pods[0].netns, lab.pods[1].ip)


def start_bird_as_its_container_would(lab: Cluster, i: int) -> subprocess.Popen[bytes]:
    """The DaemonSet's bird container: wait for the agent's first config, then run BIRD on it."""
    d = os.path.join(lab.work, f"n{i + 1}", "state", "bird")
    script = (f"until [ -s {d}/bird.conf ]; do sleep 0.1; done; "
              f"exec bird -f -c {d}/bird.conf -s {d}/bird.ctl -P {d}/bird.pid")
    return subprocess.Popen(["ip", "netns", "exec", lab.nodes[i], "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_bird_run_by_another_container_is_waited_for_and_its_restart_keeps_the_routes(record_property: Any) -> None:
    lab = Cluster(2, "bgp", lease_ttl=3)
    lab.node_settings = {0: {"bird": "external"}, 1: {"bird": "external"}}
    birds: list[subprocess.Popen[bytes]] = []
    try:
        lab.up(wait_ready=False)
        assert not os.path.exists(lab.conflist_path(0)), "ready without BIRD"
        birds = [start_bird_as_its_container_would(lab, i) for i in range(2)]
        wait_for(lambda: all(os.path.exists(lab.conflist_path(i)) for i in range(2)), 30, "nodes ready")
        a, b = lab.add_pod(0), lab.add_pod(1)
        wait_for(lambda: converged(lab), 30, "BGP convergence")
        with Pinger(a.netns, b.ip) as pinger:
            time.sleep(0.3)
            birds[0].kill()                              # the container dies; kubelet starts it again (no -R)
            birds[0].wait()
            birds[0] = start_bird_as_its_container_would(lab, 0)
            wait_for(lambda: established(lab, 0, "node_n2"), 30, "session back")
            assert block_of(lab, 1) in lab.podnet_routes(0), "n1 dropped n2's route while its BIRD restarted"
            wait_for(lambda: converged(lab), 30, "converged again")
            time.sleep(0.3)
        r = pinger.stop()
        record_property("bird_container_restart_lost", r.lost)
        print(f"BIRD container restart (no graceful-restart recovery): {r.lost}/{r.sent} probes lost, "
              f"longest gap {r.longest_gap:.2f}s")
        assert r.longest_gap < 3
    finally:
        for p in birds:
            p.kill()
        lab.down()
