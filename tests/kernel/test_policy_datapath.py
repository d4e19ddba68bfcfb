"""Packets through the NetworkPolicy table, IPv4 and IPv6, on a bridge: a node namespace with a
bridge and four pods on it (dual-stack), the engine programming the node's table from API-shaped
objects, and real TCP and UDP connections between the pods checked against the reference model.
Bridged traffic reaches the inet forward hook through br_netfilter (the node conflist of
`podnet install --kubernetes` puts pods on a bridge; the lab's ptp pods are routed, see
tests/cluster/test_network_policy.py)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.agent.policy.engine import PolicyEngine
from podnet.lab.probe import PodServers, Target, connect_once, probe
from tests.helpers.cni import netns_add, netns_del, nsexec, unique
from tests.helpers.netpol_cases import PORTS, pol
from tests.helpers.netpol_model import Model, MPod
from tests.helpers.netpol_world import pod_api

PODS = {"x/a": (11, {"pod": "a", "role": "db"}), "x/b": (12, {"pod": "b"}),
        "y/a": (13, {"pod": "a"}), "y/b": (14, {"pod": "b", "role": "db"})}


class BridgeNode:
    def __init__(self) -> None:
        self.node = unique("pdn")
        self.pods: dict[str, str] = {}          # key → netns name
        netns_add(self.node)
        nsexec(self.node, "ip", "link", "add", "br0", "type", "bridge")
        nsexec(self.node, "ip", "addr", "add", "10.77.0.1/24", "dev", "br0")
        nsexec(self.node, "ip", "addr", "add", "fd77::1/64", "dev", "br0", "nodad")
        nsexec(self.node, "ip", "link", "set", "br0", "up")
        nsexec(self.node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
        for i, (key, (host, _)) in enumerate(PODS.items()):
            ns = unique("pdp")
            netns_add(ns)
            self.pods[key] = ns
            nsexec(self.node, "ip", "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            nsexec(self.node, "ip", "link", "set", f"veth{i}", "master", "br0", "up")
            nsexec(ns, "ip", "addr", "add", f"10.77.0.{host}/24", "dev", "eth0")
            nsexec(ns, "ip", "addr", "add", f"fd77::{host}/64", "dev", "eth0", "nodad")
            nsexec(ns, "ip", "link", "set", "eth0", "up")
            nsexec(ns, "ip", "link", "set", "lo", "up")

    def apply(self, script: str) -> None:
        if script:
            p = subprocess.run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], input=script, capture_output=True,
                               text=True)
            assert p.returncode == 0, p.stderr

    def remove(self) -> None:
        for ns in [*self.pods.values(), self.node]:
            netns_del(ns)


@pytest.fixture
def node() -> Iterator[BridgeNode]:
    n = BridgeNode()
    servers: list[PodServers] = []
    try:
        servers = [PodServers(f"/run/netns/{ns}") for ns in n.pods.values()]
        yield n
    finally:
        for s in servers:
            s.stop()
        n.remove()


def _ip(key: str, fam: int) -> str:
    host = PODS[key][0]
    return f"10.77.0.{host}" if fam == 4 else f"fd77::{host}"


def check(n: BridgeNode, policies: list[dict[str, Any]], tmp: str) -> None:
    engine = PolicyEngine("n1", tmp, apply=n.apply)
    for fam in (4, 6):
        pods = {key: pod_api(*key.split("/"), _ip(key, fam), "n1", labels) for key, (_, labels) in PODS.items()}
        engine.set_all(pods=pods, namespaces={ns: {"kubernetes.io/metadata.name": ns} for ns in ("x", "y")},
                       policies={f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in policies})
        mpods = [MPod(*key.split("/"), _ip(key, fam), labels, {nm: (pr, num) for nm, pr, num in PORTS})
                 for key, (_, labels) in PODS.items()]
        for port, proto in ((80, "TCP"), (81, "UDP")):
            want = Model(mpods, {}, policies).matrix(port, proto)
            got = probe({k: f"/run/netns/{ns}" for k, ns in n.pods.items()},
                        [Target(k, _ip(k, fam)) for k in PODS], port, proto)
            bad = {cell: got.get(cell) for cell in want if got.get(cell) != want[cell]}
            assert not bad, f"IPv{fam} {port}/{proto}: cells where the kernel differs from the model: {bad}"
            # the pod's own node (kubelet's probes) always gets in
            if proto == "TCP":
                for key in PODS:
                    assert connect_once(f"/run/netns/{n.node}", _ip(key, fam), port, 2.0), f"node → {key}, IPv{fam}"
        assert any(not v for v in want.values()), "a policy set that isolates nothing proves little"


def test_deny_and_allow_both_families(node: BridgeNode, tmp_path: Any) -> None:
    check(node, [pol("x", "deny-ingress", ingress=[]),
                 pol("x", "a-from-y-b", {"matchLabels": {"pod": "a"}},
                     ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                                         "podSelector": {"matchLabels": {"pod": "b"}}}]}])], str(tmp_path))



def test_egress_named_ports_and_ip_blocks_both_families(node: BridgeNode, tmp_path: Any) -> None:
    check(node, [pol("y", "b-out", {"matchLabels": {"pod": "b"}},
                     egress=[{"to": [{"podSelector": {"matchLabels": {"role": "db"}}, "namespaceSelector": {}}],
                              "ports": [{"port": "serve-80-tcp"}, {"port": 81, "protocol": "UDP"}]}]),
                 pol("y", "a-in", {"matchLabels": {"pod": "a"}},
                     ingress=[{"from": [{"ipBlock": {"cidr": "10.77.0.0/24", "except": ["10.77.0.12/32"]}},
                                        {"ipBlock": {"cidr": "fd77::/64", "except": ["fd77::12/128"]}}]}])],
          str(tmp_path))
