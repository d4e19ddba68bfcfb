"""Cross-node pod networking, host-gw and vxlan: three node namespaces on one fabric, an agent in each
(registered in etcd under a lease, reconciling routes), ptp pods addressed by the cluster
IPAM.  Every pod reaches every pod on the other nodes with its own source address; a dead
node's routes disappear; a route deleted by hand comes back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from podnet.net import probe
from tests.helpers.cni import netns_add, netns_del, nsexec, run_plugin, unique
from tests.helpers.etcd import Etcd, have_etcd
from tests.helpers.traffic import fetch, server

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")

TTL = 2


class Cluster:
    def __init__(self, tmp: Path, n: int, backend: str = "host-gw") -> None:
        self.backend = backend
        self.fab = unique("pnt-f-")
        self.nodes = [unique("pnt-n-") for _ in range(n)]
        self.agents: list[subprocess.Popen[bytes]] = []
        self.socks = [str(tmp / f"agent{i}.sock") for i in range(n)]
        self.logs = [str(tmp / f"agent{i}.log") for i in range(n)]
        self.etcd: Etcd | None = None

    def up(self) -> None:
        for ns in [self.fab, *self.nodes]:
            netns_add(ns)
            nsexec(ns, "ip", "link", "set", "lo", "up")
        nsexec(self.fab, "ip", "link", "add", "fabbr", "type", "bridge")
        nsexec(self.fab, "ip", "addr", "add", "10.97.0.254/24", "dev", "fabbr")
        nsexec(self.fab, "ip", "link", "set", "fabbr", "up")
        for i, node in enumerate(self.nodes, 1):
            nsexec(self.fab, "ip", "link", "add", f"fab{i}", "type", "veth", "peer", "name", "up0", "netns", node)
            nsexec(self.fab, "ip", "link", "set", f"fab{i}", "master", "fabbr", "up")
            nsexec(node, "ip", "addr", "add", f"10.97.0.{i}/24", "dev", "up0")
            nsexec(node, "ip", "link", "set", "up0", "up")
        self.etcd = Etcd(ip="10.97.0.254", netns=self.fab)
        self.etcd.wait_healthy()
        for i in range(len(self.nodes)):
            self.start_agent(i)

    def start_agent(self, i: int) -> None:
        assert self.etcd is not None
        p = subprocess.Popen(["ip", "netns", "exec", self.nodes[i], sys.executable, "-m", "podnet.cli", "agent",
                              "--socket", self.socks[i], "--log-file", self.logs[i], "--routing", self.backend,
                              "--node", f"n{i + 1}", "--etcd", self.etcd.url, "--underlay-addr", f"10.97.0.{i + 1}",
                              "--lease-ttl", str(TTL), "--route-interval", "0.3"])
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socks[i]):
            assert p.poll() is None and time.monotonic() < deadline, Path(self.logs[i]).read_text()
            time.sleep(0.05)
        if i < len(self.agents):
            self.agents[i] = p
        else:
            self.agents.append(p)

    def conf(self, i: int) -> dict[str, Any]:
        assert self.etcd is not None
        mtu = {"mtu": 1450} if self.backend == "vxlan" else {}   # the underlay's 1500 minus VXLAN's 50
        return {"cniVersion": "1.0.0", "name": "cluster", "type": "podnet-ptp", "agentSocket": self.socks[i], **mtu,
                "ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": [self.etcd.url], "subnet": "10.244.0.0/16",
                         "gateway": "10.244.0.1", "blockSize": 26, "node": f"n{i + 1}"}}

    def down(self) -> None:
        for p in self.agents:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.etcd is not None:
            self.etcd.remove()
        for ns in [*self.nodes, self.fab]:
            netns_del(ns)


@pytest.fixture(params=["host-gw", "vxlan"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3, request.param)
    try:
        c.up()
        yield c
    finally:
        c.down()


def podnet_routes(node: str) -> dict[str, str]:
    return {r["dst"]: r.get("gateway", "") for r in json.loads(nsexec(node, "ip", "-j", "route", "show").stdout)
            if r.get("protocol") == "151"}


def wait_for(pred: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_all_pairs_source_kept_dead_node_and_repair(cluster: Cluster, bin_dir: str, make_pod) -> None:
    pods: list[tuple[int, str, str]] = []                     # (node index, netns path, ip)
    for i in range(3):
        for k in range(2):
            pod = make_pod()
            r = run_plugin(f"{bin_dir}/podnet-ptp", "ADD", cluster.conf(i), netns=pod, sandbox=cluster.nodes[i],
                           container_id=f"p{i}{k}")
            assert r.rc == 0, r.stdout + r.stderr
            pods.append((i, pod, r.out["ips"][0]["address"].split("/")[0]))
    import ipaddress
    blocks = {i: {ipaddress.ip_network(f"{ip}/26", strict=False) for n, _, ip in pods if n == i} for i in range(3)}
    assert all(len(b) == 1 for b in blocks.values()) and len(set().union(*blocks.values())) == 3, blocks

    def converged() -> bool:
        return all(len(podnet_routes(node)) == 2 for node in cluster.nodes)
    wait_for(converged, 10)
    for i, node in enumerate(cluster.nodes):
        hops = set(podnet_routes(node).values())
        assert hops == {f"10.97.0.{j + 1}" for j in range(3) if j != i}, (i, podnet_routes(node))

    for src in pods:
        for dst in pods:
            if src[0] != dst[0]:
                assert probe.ping(src[1], dst[2]), f"{src[2]} (node {src[0]}) cannot reach {dst[2]} (node {dst[0]})"
    if cluster.backend == "vxlan":
        dev = [lk for lk in json.loads(nsexec(cluster.nodes[0], "ip", "-j", "link").stdout)
               if lk["ifname"] == "podnet.1"]
        assert dev and dev[0]["mtu"] == 1450
        assert probe.ping(pods[0][1], pods[2][2], size=1372), "a 1400-byte packet does not cross the VXLAN"
        stats = json.loads(nsexec(cluster.nodes[0], "ip", "-j", "-s", "link", "show", "podnet.1").stdout)[0]
        assert stats["stats64"]["tx"]["packets"] > 0 and stats["stats64"]["rx"]["packets"] > 0, \
            "pod traffic did not go through the VXLAN device"
    a, b = pods[0], pods[2]                                    # node 0 → node 1
    with server(os.path.basename(b[1]), "tcp", 8080, "podB"):
        got = fetch(os.path.basename(a[1]), "tcp", b[2], 8080)
    assert got == f"podB {a[2]}", f"source address not preserved across nodes: {got!r}"

    node0 = cluster.nodes[0]
    victim = next(iter(podnet_routes(node0)))
    nsexec(node0, "ip", "route", "del", victim)
    took = wait_for(lambda: victim in podnet_routes(node0), 5)
    assert took <= 1.5, f"a deleted route came back after {took:.1f}s"

    cluster.agents[2].kill()                                   # node 3's agent dies: its lease runs out
    cluster.agents[2].wait()
    t = wait_for(lambda: all("10.97.0.3" not in podnet_routes(n).values() for n in cluster.nodes[:2]), TTL + 10)
    assert t <= TTL + 2.0, f"a dead node's routes lingered {t:.1f}s (lease TTL {TTL}s)"
    assert probe.ping(pods[0][1], pods[2][2]), "the surviving nodes lost each other"

    cluster.start_agent(2)                                     # it comes back: routes return
    wait_for(converged, 10)
    assert probe.ping(pods[0][1], pods[4][2])
    for i, pod, _ in pods:
        k = pods.index((i, pod, _)) % 2
        assert run_plugin(f"{bin_dir}/podnet-ptp", "DEL", cluster.conf(i), netns=pod, sandbox=cluster.nodes[i],
                          container_id=f"p{i}{k}").rc == 0
