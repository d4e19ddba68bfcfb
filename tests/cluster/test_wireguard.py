"""--encryption wireguard on the virtual cluster: every node's podnet.wg run by a real
wireguard-go (this kernel has no WireGuard; the tests say so when wireguard-go is missing),
peers and routes from etcd, and an eavesdropper on the fabric (a packet socket in the fabric
namespace) who must see only UDP to the WireGuard port — no marker a pod sent, no pod address.
Continuity is measured with a continuous ping (an echo every 20 ms) or one long TCP stream
while agents restart, wireguard-go dies and keys rotate."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podnet.lab import CLUSTER_CIDR, FABRIC_NET, Cluster, reach
from podnet.lab.capture import capturing, judge, send_marker
from podnet.lab.continuity import Pinger, Stream
from podnet.net import probe
from tests.helpers.etcd import have_etcd
from tests.helpers.kubernetes import needs_kubernetes
from tests.helpers.load import condition, load_conditions

pytestmark = [
    pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)"),
    pytest.mark.skipif(shutil.which("wireguard-go") is None,
                       reason="wireguard-go is not installed (apt install wireguard-go); this kernel has no WireGuard"),
]

# The first pod ping after the routes converge: allowed a few seconds, because in about one CI run
# of three it was lost (seen on two different tests) — some WireGuard peer state still lands after
# the routes the lab waits for.  Not understood yet (see the issue notes); if the path never comes up
# within 5 s the test still fails.
FIRST_PING = "the first encrypted pod ping within 5 s of the routes converging"


MARKER = b"PODNET-TEST-MARKER-0451"
TTL = 2


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - t0


def on_node(lab: Cluster, i: int, *argv: str) -> Any:
    """A podnet CLI command run on node i (in its netns, as an operator on that node would); its JSON."""
    p = subprocess.run(["ip", "netns", "exec", lab.nodes[i], sys.executable, "-m", "podnet.cli", *argv],
                       capture_output=True, text=True)
    assert p.stdout, p.stderr
    return json.loads(p.stdout)


def node_ls(lab: Cluster, i: int) -> dict[str, dict[str, Any]]:
    rows = on_node(lab, i, "node", "--etcd", lab.etcd_url, "--json", "ls", "--agent-socket", lab.sock(i))
    return {r["node"]: r for r in rows}


def peers(lab: Cluster, i: int) -> dict[str, dict[str, Any]]:
    """Node i's WireGuard peers as its agent reports them (GET /wireguard, through doctor's view)."""
    from podnet.net.wguapi import Uapi
    state = Uapi(os.path.join(lab.work, f"n{i + 1}", "wireguard", "podnet.wg.sock")).get()
    return {k: {"allowed_ips": p.allowed_ips, "endpoint": p.endpoint, "handshake": p.last_handshake}
            for k, p in state.peers.items()}


def wg_pid(lab: Cluster, i: int) -> int:
    rows = on_node(lab, i, "doctor", "--socket", lab.sock(i), "--json")
    line = next(r["detail"] for r in rows if r["check"] == "wireguard")
    return int(line.split("(pid ")[1].split(")")[0])


def trace(lab: Cluster, i: int, src: str, dst: str) -> dict[str, Any]:
    return dict(on_node(lab, i, "trace", src, dst, "--etcd", lab.etcd_url, "--json"))


def pubkey(lab: Cluster, i: int) -> str:
    return str(json.loads(lab.podnet("node", "--json", "ls"))[i]["wg_pubkey"])


@pytest.fixture(params=["host-gw", "vxlan"])
def encrypted(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(3, request.param, lease_ttl=TTL, encryption="wireguard")
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_all_pairs_cross_encrypted_and_nothing_in_clear(encrypted: Cluster) -> None:
    lab = encrypted
    for i in range(3):
        for _ in range(2):
            lab.add_pod(i)
    lab.wait_converged(10)
    for i in range(3):
        assert lab.conflist(i)["plugins"][0]["mtu"] == 1440      # 1500 - 60: WireGuard over IPv4
        dev = json.loads(subprocess.run(["ip", "-n", lab.nodes[i], "-j", "link", "show", "podnet.wg"],
                                        capture_output=True, text=True, check=True).stdout)[0]
        assert dev["mtu"] == 1440 and "UP" in dev["flags"]
        routes = json.loads(subprocess.run(["ip", "-n", lab.nodes[i], "-j", "route", "show", "proto", "151"],
                                           capture_output=True, text=True, check=True).stdout)
        assert routes and all(r["dev"] == "podnet.wg" and "gateway" not in r for r in routes), routes
        key = os.path.join(lab.work, f"n{i + 1}", "state", "wireguard", "private.key")
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

    # a peer added before the other side knows this node drops its first handshake, and WireGuard
    # tries again only after 5 s (REKEY_TIMEOUT): under load that outlasts the probes' retry
    wait_for(lambda: all(len(peers(lab, i)) == 2 and all(p["handshake"] > 0 for p in peers(lab, i).values())
                         for i in range(3)), 30, "a handshake between every pair of nodes")
    with capturing(f"/run/netns/{lab.fab}") as cap:
        pairs = [(a.netns, b.ip) for a in lab.pods for b in lab.pods if a.node != b.node]
        verdicts = reach.check(pairs, port=None)
        src, dst = lab.pods[0], lab.pods[-1]
        delivered = send_marker(src.netns, dst.netns, dst.ip, MARKER)
        big = probe.ping(src.netns, dst.ip, size=1412)             # a full 1440-byte packet crosses
    assert all(v.icmp for v in verdicts.values()), [p for p, v in verdicts.items() if not v.icmp]
    assert delivered == (True, True) and big
    v = judge(cap, [f"{FABRIC_NET}.{i + 1}" for i in range(3)], [CLUSTER_CIDR], MARKER, 51820)
    assert v.clean, v.describe()

    ls = node_ls(lab, 0)                                           # key fingerprints, handshake ages from n1
    assert all(ls[f"n{i + 1}"]["wg_pubkey"] for i in range(3))
    assert all(ls[f"n{i + 1}"]["handshake_age"] is not None and ls[f"n{i + 1}"]["handshake_age"] < 60 for i in (1, 2))
    doctor = on_node(lab, 0, "doctor", "--socket", lab.sock(0), "--json")
    wg = [r for r in doctor if r["check"].startswith("wireguard")]
    assert len(wg) == 3 and all(r["level"] == "ok" for r in wg), wg
    t = trace(lab, 0, src.name, dst.name)
    assert t["ok"] and any("encrypted to peer n3 at 10.97.0.3:51820" in h["what"] for h in t["hops"]), t


def test_the_capture_sees_plaintext_without_encryption() -> None:
    """The control: the same eavesdropper on a cluster without encryption sees the marker and
    the pods' addresses (so a clean capture above means something)."""
    lab = Cluster(2, "host-gw", lease_ttl=TTL)
    try:
        lab.up()
        a, b = lab.add_pod(0), lab.add_pod(1)
        lab.wait_converged(10)
        with capturing(f"/run/netns/{lab.fab}") as cap:
            assert send_marker(a.netns, b.netns, b.ip, MARKER) == (True, True)
        v = judge(cap, [f"{FABRIC_NET}.{i + 1}" for i in range(2)], [CLUSTER_CIDR], MARKER, 51820)
        assert v.marker_seen and v.pod_addressed and not v.clean
    finally:
        lab.down()


@pytest.fixture
def two_encrypted() -> Iterator[Cluster]:
    c = Cluster(2, "host-gw", lease_ttl=TTL, encryption="wireguard")
    try:
        c.up()
        yield c
    finally:
        c.down()


@pytest.mark.parametrize("machine", load_conditions())
def test_agent_restarts_lose_nothing_and_a_dead_wireguard_go_comes_back(two_encrypted: Cluster,
                                                                         record_property: Any, machine: str) -> None:
    """Also with every core busy (issue 34): real nodes are busy."""
    lab = two_encrypted
    p0, p1 = lab.add_pod(0), lab.add_pod(1)
    lab.wait_converged(10)
    wait_for(lambda: probe.ping(p0.netns, p1.ip, timeout=0.5), 5, FIRST_PING)
    pid = wg_pid(lab, 1)
    with condition(machine):
        _restarts_and_a_killed_wireguard_go(lab, p0, p1, pid, record_property)


def _restarts_and_a_killed_wireguard_go(lab: Cluster, p0: Any, p1: Any, pid: int, record_property: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with Pinger(p0.netns, p1.ip) as pinger:
            time.sleep(0.3)                                    # traffic flowing before the restart
            lab.kill_agent(1, sig)
            lab.start_agent(1)
            wait_for(lambda: pinger.result.answered > 0 and pinger.result.sent - pinger.result.answered < 5, 5, "ping")
            time.sleep(0.3)
        r = pinger.stop()
        assert r.lost == 0, f"agent {sig.name}: {r.lost} of {r.sent} echoes lost"
        assert wg_pid(lab, 1) == pid, "the restarted agent started a new wireguard-go instead of adopting it"

    with Pinger(p0.netns, p1.ip) as pinger:
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)                           # wireguard-go dies under traffic
        t_kill = time.monotonic()
        seen = pinger.result.answered
        wait_for(lambda: pinger.result.answered > seen + 5, 30, "traffic after wireguard-go was killed")
        back = time.monotonic() - t_kill
    r = pinger.stop()
    new_pid = wg_pid(lab, 1)
    assert new_pid != pid
    record_property("wireguard_go_killed_gap_s", round(r.longest_gap, 3))
    print(f"wireguard-go SIGKILL: traffic back after {back:.2f}s, longest gap {r.longest_gap:.2f}s, "
          f"{r.lost}/{r.sent} echoes lost")
    assert r.longest_gap < 10, f"pod traffic stopped for {r.longest_gap:.1f}s after wireguard-go died"


def test_key_rotation_during_a_long_tcp_stream(two_encrypted: Cluster, record_property: Any) -> None:
    lab = two_encrypted
    p0, p1 = lab.add_pod(0), lab.add_pod(1)
    lab.wait_converged(10)
    old = pubkey(lab, 0)
    with Stream(p0.netns, p1.netns, p1.ip) as stream:
        time.sleep(0.5)
        out = lab.podnet("node", "rotate-key", "n1")
        assert "asked node n1" in out
        wait_for(lambda: pubkey(lab, 0) != old, 10, "the new key published")
        new = pubkey(lab, 0)
        wait_for(lambda: new in peers(lab, 1) and old not in peers(lab, 1), 10, "n2's peer updated")
        wait_for(lambda: peers(lab, 1)[new]["handshake"] > 0, 10, "a handshake with the new key")
        sent = stream.result.sent
        wait_for(lambda: stream.result.sent > sent + 50, 10, "the stream going on")
    r = stream.stop()
    record_property("rotation_longest_gap_s", round(r.longest_gap, 3))
    print(f"key rotation: stream of {r.sent} chunks, longest pause {r.longest_gap:.2f}s, error {r.error or 'none'}")
    assert not r.error, r.error
    assert r.longest_gap < 10
    with open(os.path.join(lab.work, "n1", "state", "wireguard", "private.key")) as f:
        from podnet.net.wguapi import public_key
        assert public_key(f.read().strip()) == new          # the new key is the one kept for restarts


def test_a_removed_node_is_no_peer_anywhere() -> None:
    lab = Cluster(3, "host-gw", lease_ttl=TTL, encryption="wireguard")
    try:
        lab.up()
        for i in range(3):
            lab.add_pod(i)
        lab.wait_converged(10)
        gone = pubkey(lab, 2)
        assert all(gone in peers(lab, i) for i in (0, 1))
        lab.remove_node(2)
        wait_for(lambda: all(gone not in peers(lab, i) for i in (0, 1)), 5, "n3's peer removed")
        wait_for(lambda: probe.ping(lab.pods[0].netns, lab.pods[1].ip, timeout=0.5), 5, FIRST_PING)
    finally:
        lab.down()


def test_a_mixed_cluster_refuses_rather_than_sending_plaintext() -> None:
    """n3 runs without encryption: n1 and n2 route its pods as unreachable and it theirs; every
    side says why (doctor), and no pod's marker reaches the wire."""
    lab = Cluster(3, "host-gw", lease_ttl=TTL, encryption="wireguard")
    lab.node_settings[2] = {"encryption": ""}
    try:
        lab.up()
        pods = [lab.add_pod(i) for i in range(3)]

        def refused() -> bool:
            routes = [lab.podnet_routes(i) for i in range(3)]
            return all(any(k.startswith("10.244.") for k in r) for r in routes)
        wait_for(refused, 10, "routes")
        show = subprocess.run(["ip", "-n", lab.nodes[0], "route", "show", "proto", "151"], capture_output=True,
                              text=True, check=True).stdout
        block3 = str(__import__("ipaddress").ip_network(f"{pods[2].ip}/26", strict=False))
        wait_for(lambda: f"unreachable {block3}" in subprocess.run(
            ["ip", "-n", lab.nodes[0], "route", "show", "proto", "151"], capture_output=True, text=True).stdout,
            10, f"unreachable route for n3's block {block3} on n1: {show}")
        wait_for(lambda: probe.ping(pods[0].netns, pods[1].ip, timeout=0.5), 5, FIRST_PING)   # the encrypted pair works
        with capturing(f"/run/netns/{lab.fab}") as cap:
            assert not probe.ping(pods[0].netns, pods[2].ip, timeout=1)
            assert not probe.ping(pods[2].netns, pods[0].ip, timeout=1)
        assert not cap.with_address_in([CLUSTER_CIDR]), "a pod's packet crossed the fabric in clear"
        doctor = on_node(lab, 0, "doctor", "--socket", lab.sock(0), "--json")
        fails = [r["detail"] for r in doctor if r["level"] == "fail"]
        assert any("n3" in d and "does not encrypt" in d for d in fails), doctor
        t = trace(lab, 0, pods[0].name, pods[2].name)
        assert not t["ok"] and "unreachable" in t["broken"] and "does not encrypt" in t["broken"], t
        log = lab.agent_log(2)
        assert "encrypts pod traffic (WireGuard) and this node does not" in log
    finally:
        lab.down()


@needs_kubernetes
def test_on_the_kubernetes_datastore_keys_travel_as_node_annotations() -> None:
    """The agents publish their public key on their Node (podnet.io/wg-pubkey) and build their
    peers from the other Nodes' annotations; pods cross encrypted."""
    lab = Cluster(2, "host-gw", datastore="kubernetes", encryption="wireguard")
    try:
        lab.up()
        a, b = lab.add_pod(0), lab.add_pod(1)
        lab.wait_converged(15)
        keys = [lab.kube.annotations(f"n{i + 1}").get("podnet.io/wg-pubkey", "") for i in range(2)]
        assert all(keys), keys
        assert keys[0] in peers(lab, 1) and keys[1] in peers(lab, 0)
        with capturing(f"/run/netns/{lab.fab}") as cap:
            assert send_marker(a.netns, b.netns, b.ip, MARKER) == (True, True)
        assert not cap.carrying(MARKER) and not cap.with_address_in([CLUSTER_CIDR])
    finally:
        lab.down()


def start_wireguard_go(lab: Cluster, i: int) -> subprocess.Popen[bytes]:
    """wireguard-go on node i as the DaemonSet's wireguard container runs it (not by the agent)."""
    run_dir = os.path.join(lab.work, f"n{i + 1}", "wireguard")
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs("/run/wireguard", exist_ok=True)
    return subprocess.Popen(["ip", "netns", "exec", lab.nodes[i], "unshare", "--mount", "--propagation", "private",
                             "sh", "-c", 'mount --bind "$0" /run/wireguard && exec wireguard-go -f podnet.wg', run_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_wireguard_go_run_by_another_container_is_waited_for_and_configured_after_each_restart() -> None:
    lab = Cluster(2, "host-gw", lease_ttl=TTL, encryption="wireguard", agent_args=("--wireguard-go", "external"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lab.up(wait_ready=False)
        health = subprocess.run(["ip", "netns", "exec", lab.nodes[0], sys.executable, "-m", "podnet.cli", "health",
                                 "--ready", "--socket", lab.sock(0)], capture_output=True, text=True)
        wait_for(lambda: "waiting for wireguard-go" in subprocess.run(
            ["ip", "netns", "exec", lab.nodes[0], sys.executable, "-m", "podnet.cli", "health", "--ready", "--socket",
             lab.sock(0)], capture_output=True, text=True).stdout, 10, f"the not-ready reason ({health.stdout})")
        assert not os.path.exists(lab.conflist_path(0)), "ready without its WireGuard device"
        procs = [start_wireguard_go(lab, i) for i in range(2)]
        wait_for(lambda: all(os.path.exists(lab.conflist_path(i)) for i in range(2)), 30, "nodes ready")
        a, b = lab.add_pod(0), lab.add_pod(1)
        lab.wait_converged(10)
        wait_for(lambda: probe.ping(a.netns, b.ip, timeout=0.5), 5, FIRST_PING)
        procs[1].kill()                                        # the container dies; kubelet starts it again
        procs[1].wait()
        procs[1] = start_wireguard_go(lab, 1)
        wait_for(lambda: probe.ping(a.netns, b.ip, timeout=0.5), 30, "traffic through the restarted wireguard-go")
    finally:
        for p in procs:
            p.kill()
        lab.down()


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (apt install bird2)")
def test_with_bgp_node_to_node_is_encrypted_and_bird_still_serves_the_network() -> None:
    """routing bgp + encryption: the other nodes' CIDRs go into podnet.wg; BIRD still announces
    each node's CIDR to the top-of-rack router and brings the external subnet, which pods reach
    with their own address (traffic leaving the cluster is not the tunnel's business)."""
    from podnet.demo import DEMO_PORT, _check_external, _listen_in
    from podnet.lab import TOR_ADDR
    lab = Cluster(3, "bgp", lease_ttl=TTL, encryption="wireguard")
    try:
        lab.up()
        pods = [lab.add_pod(i) for i in range(3)]

        def ready() -> bool:
            r = [lab.podnet_routes(i) for i in range(3)]
            return all(sum(1 for gw in x.values() if gw == "") == 3 and x.get("10.98.0.0/24") == TOR_ADDR for x in r)
        wait_for(ready, 30, "own blackhole + two WireGuard routes + the external subnet on every node")
        show = subprocess.run(["ip", "-n", lab.nodes[0], "route", "show", "proto", "151"], capture_output=True,
                              text=True, check=True).stdout
        assert show.count("dev podnet.wg") == 2 and "blackhole" in show and f"via {TOR_ADDR}" in show, show
        with capturing(f"/run/netns/{lab.fab}") as cap:
            assert send_marker(pods[0].netns, pods[2].netns, pods[2].ip, MARKER) == (True, True)
        v = judge(cap, [f"{FABRIC_NET}.{i + 1}" for i in range(3)], [CLUSTER_CIDR], MARKER, 51820, control_ports=(179,))
        assert v.clean, v.describe()           # between nodes: WireGuard only, BGP's own sessions aside
        wait_for(lambda: all(lab.tor_routes().get(str(__import__("ipaddress").ip_network(f"{p.ip}/26", strict=False)))
                             for p in pods), 20, "the ToR learns every block")
        listeners = [_listen_in(p.netns, DEMO_PORT) for p in pods]
        try:
            assert _check_external(lab)
        finally:
            for s in listeners:
                s.close()
    finally:
        lab.down()
