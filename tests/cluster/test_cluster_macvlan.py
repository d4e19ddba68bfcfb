"""The seed's scenario: macvlan pods on two nodes share ONE underlay subnet, addressed by
podnet-cluster-ipam from etcd (no per-node pre-carving), and reach each other.

fabric netns: bridge `fabbr` (the underlay wire) + etcd on 10.97.0.254
node netns n1, n2: `up0` on the fabric (10.97.0.1, .2) — the macvlan master
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.net import probe
from tests.helpers.cni import netns_add, netns_del, nsexec, run_plugin, unique
from tests.helpers.etcd import Etcd, have_etcd

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")


@pytest.fixture
def fabric() -> Iterator[tuple[str, list[str], Etcd]]:
    fab = unique("pnt-f-")
    nodes = [unique("pnt-n-") for _ in range(2)]
    for ns in [fab, *nodes]:
        netns_add(ns)
        nsexec(ns, "ip", "link", "set", "lo", "up")
    etcd = None
    try:
        nsexec(fab, "ip", "link", "add", "fabbr", "type", "bridge")
        nsexec(fab, "ip", "addr", "add", "10.97.0.254/24", "dev", "fabbr")
        nsexec(fab, "ip", "link", "set", "fabbr", "up")
        for i, node in enumerate(nodes, 1):
            nsexec(fab, "ip", "link", "add", f"fab{i}", "type", "veth", "peer", "name", "up0", "netns", node)
            nsexec(fab, "ip", "link", "set", f"fab{i}", "master", "fabbr", "up")
            nsexec(node, "ip", "addr", "add", f"10.97.0.{i}/24", "dev", "up0")
            nsexec(node, "ip", "link", "set", "up0", "up")
        etcd = Etcd(ip="10.97.0.254", netns=fab)
        etcd.wait_healthy()
        yield fab, nodes, etcd
    finally:
        if etcd is not None:
            etcd.remove()
        for ns in [*nodes, fab]:
            netns_del(ns)


def conf(etcd: Etcd, node: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "underlay", "type": "podnet-macvlan", "master": "up0", "mode": "bridge",
            "agentSocket": "/nonexistent",
            "ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": [etcd.url], "subnet": "10.98.0.0/24",
                     "blockSize": 28, "node": node}}


def test_macvlan_pods_on_two_nodes_share_one_subnet(bin_dir: str, fabric: Any, make_pod) -> None:
    fab, nodes, etcd = fabric
    b = f"{bin_dir}/podnet-macvlan"
    pods: list[tuple[str, str, str]] = []   # (node, pod netns path, ip)
    for n, node in enumerate(nodes):
        for k in range(2):
            pod = make_pod()
            r = run_plugin(b, "ADD", conf(etcd, f"n{n + 1}"), netns=pod, sandbox=node, container_id=f"p{n}{k}",
                           ifname="net1")
            assert r.rc == 0, r.stdout + r.stderr
            pods.append((node, pod, r.out["ips"][0]["address"].split("/")[0]))
    ips = [p[2] for p in pods]
    assert len(set(ips)) == 4, ips
    first_block = {ip for ip in ips if int(ip.split(".")[-1]) < 16}
    assert first_block == set(ips[:2]), f"node n1's pods should come from its own block: {ips}"
    for src in pods:
        for dst in pods:
            if src is not dst:
                assert probe.ping(src[1], dst[2]), f"{src[2]} cannot reach {dst[2]}"
    for n, node in enumerate(nodes):
        for k in range(2):
            pod = pods[n * 2 + k][1]
            assert run_plugin(b, "DEL", conf(etcd, f"n{n + 1}"), netns=pod, sandbox=node, container_id=f"p{n}{k}",
                              ifname="net1").rc == 0
    # etcd agrees: both blocks still affine to their nodes, nothing allocated, no inconsistency
    cli = [sys.executable, "-m", "podnet.cli", "ipam", "--etcd", etcd.url]
    ls = json.loads(nsexec(fab, *cli, "--json", "ls").stdout)
    assert sorted((b["node"], b["used"]) for b in ls) == [("n1", 0), ("n2", 0)]
    assert nsexec(fab, *cli, "check", check=False).returncode == 0
