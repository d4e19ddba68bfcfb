"""The node network the agent sets up: pools per cluster CIDR and the conflist it writes."""
from __future__ import annotations

import ipaddress
import json

from podnet.agent.nodenet import NodeNetwork
from podnet.ipam.cluster import ClusterIpam
from podnet.ipam.memkv import MemKV


def net(mode: str, *cidrs: str, conf_dir: str = "") -> NodeNetwork:
    return NodeNetwork("k8s", mode, [ipaddress.ip_network(c) for c in cidrs], ["http://10.0.0.9:2379"], "/podnet/",
                       "/run/podnet/agent.sock", block_size=26, subnet_size=24, conf_dir=conf_dir)


def test_cluster_mode_conflist_uses_the_cluster_ipam_with_a_pool_per_family() -> None:
    n = net("cluster", "10.244.0.0/16", "fd00:244::/64")
    conf = n.conflist("node-a", 1450)
    (ptp,) = conf["plugins"]                       # the one-exec plugin, ptp mode, with its sections
    assert ptp["type"] == "podnet" and ptp["mode"] == "ptp" and ptp["mtu"] == 1450 and "ipMasq" not in ptp
    ipam = ptp["ipam"]
    assert ipam["type"] == "podnet-cluster-ipam" and ipam["node"] == "node-a"
    assert [(p["cidr"], p["blockSize"], p["gateway"]) for p in ipam["pools"]] == \
        [("10.244.0.0/16", 26, "10.244.0.1"), ("fd00:244::/64", 122, "fd00:244::1")]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert ptp["portmap"] == {"snat": True} and ptp["bandwidth"] == {}
    assert ptp["capabilities"] == {"portMappings": True, "bandwidth": True}


def test_host_local_mode_claims_a_subnet_and_hands_it_to_host_local(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kv = MemKV()
    a, b = net("host-local", "10.244.0.0/16", conf_dir=str(tmp_path)), net("host-local", "10.244.0.0/16")
    a.claim(ClusterIpam(kv, "node-a"))
    b.claim(ClusterIpam(kv, "node-b"))
    assert [str(s) for s in a.subnets] == ["10.244.0.0/24"] and [str(s) for s in b.subnets] == ["10.244.1.0/24"]
    path = a.write_conflist("node-a", 0)
    with open(path) as f:
        ptp = json.load(f)["plugins"][0]
    assert "mtu" not in ptp
    assert ptp["ipam"] == {"type": "podnet-host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
                           "routes": [{"dst": "0.0.0.0/0"}]}
