"""Cross-node pod networking on the virtual cluster (podnet.lab), host-gw and vxlan, with the
cluster IPAM or host-local node subnets: three node namespaces on one fabric, an agent in
each (registered in etcd under a lease, watching it, reconciling routes, writing the node's
conflist once ready), ptp pods created through that conflist.  Every pod reaches every pod
on the other nodes with its own source address; traffic leaving the cluster is
masqueraded; a removed node's routes disappear within a second, a dead node's when its
lease expires; a joining node's routes appear within a second; a route deleted by hand
comes back."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.lab import ETCD_ADDR, Cluster
from podnet.net import probe
from tests.helpers.etcd import have_etcd
from tests.helpers.traffic import fetch, server

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")

TTL = 2


@pytest.fixture(params=[("host-gw", "cluster"), ("vxlan", "cluster"), ("vxlan", "host-local")],
                ids=["host-gw", "vxlan", "vxlan-host-local"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    backend, mode = request.param
    c = Cluster(3, backend, lease_ttl=TTL, ipam_mode=mode)
    try:
        c.up()
        yield c
    finally:
        c.down()


def wait_for(pred: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_all_pairs_source_kept_masquerade_leave_join_and_repair(cluster: Cluster) -> None:
    for i in range(3):
        conf = cluster.conflist(i)                       # written by the agent once ready
        ptp = conf["plugins"][0]
        assert ptp["type"] == "podnet" and ptp["mode"] == "ptp" and "portmap" in ptp
        assert ptp.get("mtu", 0) == (1450 if cluster.backend == "vxlan" else 0)
        if cluster.ipam_mode == "host-local":
            subnet = ptp["ipam"]["ranges"][0][0]["subnet"]
            assert ptp["ipam"]["type"] == "podnet-host-local" and subnet.endswith("/24"), ptp["ipam"]
        else:
            assert ptp["ipam"]["type"] == "podnet-cluster-ipam" and ptp["ipam"]["node"] == f"n{i + 1}"
        for _ in range(3):
            cluster.add_pod(i)
    pods = cluster.pods
    size = cluster.block_prefix
    blocks = {i: {ipaddress.ip_network(f"{p.ip}/{size}", strict=False) for p in pods if p.node == i} for i in range(3)}
    assert all(len(b) == 1 for b in blocks.values()) and len(set().union(*blocks.values())) == 3, blocks
    cluster.wait_converged(10)
    for i in range(3):
        assert set(cluster.podnet_routes(i).values()) == {f"10.97.0.{j + 1}" for j in range(3) if j != i}

    for src in pods:
        for dst in pods:
            if src.node != dst.node:
                assert probe.ping(src.netns, dst.ip), f"{src.ip} (n{src.node + 1}) cannot reach {dst.ip}"
    if cluster.backend == "vxlan":
        dev = [lk for lk in json.loads(subprocess.run(["ip", "netns", "exec", cluster.nodes[0], "ip", "-j", "-s",
                                                       "link"], capture_output=True, text=True).stdout)
               if lk["ifname"] == "podnet.1"]
        assert dev and dev[0]["mtu"] == 1450
        assert dev[0]["stats64"]["tx"]["packets"] > 0, "pod traffic did not go through the VXLAN device"
        assert probe.ping(pods[0].netns, pods[3].ip, size=1372), "a 1400-byte packet does not cross the VXLAN"
    a, b = pods[0], pods[3]                                    # n1 → n2
    with server(b.name, "tcp", 8080, "podB"):
        got = fetch(a.name, "tcp", b.ip, 8080)
    assert got == f"podB {a.ip}", f"source address not preserved across nodes: {got!r}"
    with server(cluster.fab, "tcp", 9090, "outside", addr=ETCD_ADDR):
        got = fetch(a.name, "tcp", ETCD_ADDR, 9090)
    assert got == "outside 10.97.0.1", f"traffic leaving the cluster is not masqueraded by its node: {got!r}"

    victim = next(iter(cluster.podnet_routes(0)))           # the agent's netlink watch sees the delete
    subprocess.run(["ip", "netns", "exec", cluster.nodes[0], "ip", "route", "del", victim], check=True)
    took = wait_for(lambda: victim in cluster.podnet_routes(0), 5)
    assert took <= 1.0, f"a deleted route came back after {took:.1f}s"

    cluster.remove_node(2)                                     # n3 leaves (podnet node rm)
    t = wait_for(lambda: all("10.97.0.3" not in cluster.podnet_routes(i).values() for i in (0, 1)), 10)
    assert t <= 1.0, f"a removed node's routes lingered {t:.2f}s"
    assert probe.ping(pods[0].netns, pods[3].ip), "the surviving nodes lost each other"

    cluster.kill_agent(1)                                      # n2's agent dies: its lease runs out
    t = wait_for(lambda: "10.97.0.2" not in cluster.podnet_routes(0).values(), TTL + 10)
    assert t <= TTL + 2.0, f"a dead node's routes lingered {t:.1f}s (lease TTL {TTL}s)"
    cluster.start_agent(1)                                     # it comes back: its routes return
    cluster.wait_converged(10)
    assert probe.ping(pods[0].netns, pods[3].ip)

    j = cluster.add_node()                                     # a node joins; its first pod's block
    t0 = time.monotonic()
    newcomer = cluster.add_pod(j)
    took = cluster.wait_converged(10) + (time.monotonic() - t0)
    assert took <= 1.5, f"a joining node's routes took {took:.2f}s (pod ADD included)"
    assert probe.ping(pods[0].netns, newcomer.ip) and probe.ping(newcomer.netns, pods[3].ip)


@pytest.fixture
def two_nodes() -> Iterator[Cluster]:
    c = Cluster(2, "host-gw", lease_ttl=TTL)
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_pods_keep_working_while_an_agent_restarts(two_nodes: Cluster) -> None:
    cluster = two_nodes
    p0, p1 = cluster.add_pod(0), cluster.add_pod(1)
    cluster.wait_converged(10)
    cluster.kill_agent(1)                                      # n2's agent is gone, its lease still holds
    assert probe.ping(p0.netns, p1.ip) and probe.ping(p1.netns, p0.ip), "pods broke when the agent died"
    cluster.start_agent(1)
    cluster.wait_converged(10)
    assert probe.ping(p0.netns, p1.ip)


def test_live_agents_reclaim_a_dead_nodes_block() -> None:
    """No operator needed: the surviving agents take back the block of a node that stayed dead
    past --reclaim-after, and a new pod can then be given an address from it."""
    c = Cluster(2, "host-gw", lease_ttl=TTL, reclaim_after=1.0)
    try:
        c.up()
        c.add_pod(0)
        dead_pod = c.add_pod(1)
        c.wait_converged(10)
        c.kill_agent(1)
        c.pods.remove(dead_pod)             # its node is gone: nobody will DEL that pod

        def blocks() -> list[dict[str, Any]]:
            out = subprocess.run(["ip", "netns", "exec", c.fab, sys.executable, "-m", "podnet.cli", "ipam", "--etcd",
                                  c.etcd_url, "--json", "ls"], capture_output=True, text=True)
            return list(json.loads(out.stdout or "[]"))
        wait_for(lambda: all(b["node"] != "n2" for b in blocks()), TTL + 15)
        freed = [b for b in blocks() if b["node"] == ""]
        assert freed and freed[0]["used"] == 0, blocks()
    finally:
        c.down()


def test_agents_resync_after_etcd_restarts() -> None:
    """etcd is killed and comes back: every agent's watch breaks, reconnects and resyncs, so a
    change made after the restart still reaches all nodes within a second (no polling helps:
    the periodic pass is 5 s)."""
    c = Cluster(3, "vxlan", lease_ttl=10)
    try:
        c.up()
        for i in range(3):
            c.add_pod(i)
        c.wait_converged(10)
        established = [c.agent_log(i).count(" established (") for i in range(3)]
        c.restart_etcd(down_for=2.0)
        assert probe.ping(c.pods[0].netns, c.pods[1].ip), "pods lost each other while etcd was down"
        wait_for(lambda: all(c.agent_log(i).count(" established (") > established[i] for i in range(3)),
                 20)                                    # every agent's watch is back (it logs each (re)start)
        c.remove_node(2)
        t = wait_for(lambda: all("10.97.0.3" not in c.podnet_routes(i).values() for i in (0, 1)), 10)
        assert t <= 1.0, f"after an etcd restart a removed node's routes lingered {t:.2f}s (watch not resumed?)"
        c.add_node()                                            # and a join is seen too
        newcomer = c.add_pod(3)
        c.wait_converged(3)
        assert probe.ping(c.pods[0].netns, newcomer.ip)
    finally:
        c.down()
