"""NetworkPolicy in pod-network underlay (issue 30), real packets: pods whose eth0 is a macvlan child
of the node's uplink talk to each other through the macvlan bridge — their packets never cross any
hook of the node — so the engine (pod_interface set) programs the same table inside each pod's
netns, hooked on its eth0, made whole at the pod's admission.  Four pods, IPv4 and IPv6, every
cell probed and checked against the reference model; a pod admitted later gets the whole table
before its ADD would go on; a released pod's table goes.  Without the pods' tables the same
policies would stop nothing here (the control at the start)."""
from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.agent.policy.engine import PolicyEngine
from podnet.lab.probe import PodServers, Target, probe
from podnet.net import policy_nft
from tests.helpers.cni import netns_add, netns_del, nsexec, unique
from tests.helpers.netpol_cases import PORTS, pol
from tests.helpers.netpol_model import Model, MPod
from tests.helpers.netpol_world import pod_api

PODS = {"x/a": (11, {"pod": "a", "role": "db"}), "x/b": (12, {"pod": "b"}),
        "y/a": (13, {"pod": "a"}), "y/b": (14, {"pod": "b", "role": "db"})}
NAMESPACES = {ns: {"kubernetes.io/metadata.name": ns} for ns in ("x", "y")}


class UnderlayNode:
    """A node netns with an uplink (its peer in a wire netns) and four macvlan pods on it."""

    def __init__(self) -> None:
        self.node, self.wire = unique("pun"), unique("puw")
        self.pods: dict[str, str] = {}
        for ns in (self.node, self.wire):
            netns_add(ns)
        nsexec(self.node, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "wire0", "netns", self.wire)
        nsexec(self.node, "ip", "link", "set", "up0", "up")
        nsexec(self.wire, "ip", "link", "set", "wire0", "up")
        for i, (key, (host, _)) in enumerate(PODS.items()):
            ns = unique("pup")
            netns_add(ns)
            self.pods[key] = ns
            nsexec(self.node, "ip", "link", "add", f"mv{i}", "link", "up0", "type", "macvlan", "mode", "bridge")
            nsexec(self.node, "ip", "link", "set", f"mv{i}", "netns", ns)
            nsexec(ns, "ip", "link", "set", f"mv{i}", "name", "eth0")
            nsexec(ns, "ip", "addr", "add", f"10.78.0.{host}/24", "dev", "eth0")
            nsexec(ns, "ip", "addr", "add", f"fd78::{host}/64", "dev", "eth0", "nodad")
            nsexec(ns, "ip", "link", "set", "eth0", "up")
            nsexec(ns, "ip", "link", "set", "lo", "up")

    def apply(self, script: str) -> None:
        if script:
            r = subprocess.run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], input=script, capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr

    def remove(self) -> None:
        for ns in [*self.pods.values(), self.node, self.wire]:
            netns_del(ns)


@pytest.fixture
def node() -> Iterator[UnderlayNode]:
    n = UnderlayNode()
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
    return f"10.78.0.{host}" if fam == 4 else f"fd78::{host}"


def _matrix(n: UnderlayNode, fam: int, port: int, proto: str) -> dict[Any, bool]:
    return probe({k: f"/run/netns/{ns}" for k, ns in n.pods.items()}, [Target(k, _ip(k, fam)) for k in PODS], port,
                 proto)


def check(n: UnderlayNode, policies: list[dict[str, Any]], tmp: str) -> None:
    for fam in (4, 6):
        engine = PolicyEngine("n1", f"{tmp}/{fam}", apply=n.apply, pod_interface="eth0")
        pods = {key: pod_api(*key.split("/"), _ip(key, fam), "n1", labels) for key, (_, labels) in PODS.items()}
        engine.set_all(pods=pods, namespaces=NAMESPACES,
                       policies={f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in policies})
        mpods = [MPod(*key.split("/"), _ip(key, fam), labels, {nm: (pr, num) for nm, pr, num in PORTS})
                 for key, (_, labels) in PODS.items()]
        want = {port: Model(mpods, {}, policies).matrix(port, proto) for port, proto in ((80, "TCP"), (81, "UDP"))}
        assert any(not v for w in want.values() for v in w.values()), "a policy set that isolates nothing proves little"
        # the control: the node's table alone stops nothing here (macvlan never crosses the node)
        assert all(_matrix(n, fam, 80, "TCP").values()), "traffic was policed before the pods had tables"
        for key, ns in n.pods.items():
            engine.admit(*key.split("/"), f"c-{key}", [ipaddress.ip_address(_ip(key, fam))], f"/run/netns/{ns}")
        for (port, proto), w in zip(((80, "TCP"), (81, "UDP")), want.values(), strict=True):
            got = _matrix(n, fam, port, proto)
            bad = {cell: got.get(cell) for cell in w if got.get(cell) != w[cell]}
            assert not bad, f"IPv{fam} {port}/{proto}: cells where the kernel differs from the model: {bad}"
        for key, ns in n.pods.items():
            engine.release(*key.split("/"), f"c-{key}")
            tables = nsexec(ns, "nft", "-j", "list", "tables").stdout
            assert "podnet_policy" not in json.dumps(json.loads(tables)), f"{key}: its table outlived its release"
        assert all(_matrix(n, fam, 80, "TCP").values()), "released pods are still policed"


def test_deny_and_allow_on_macvlan_both_families(node: UnderlayNode, tmp_path: Any) -> None:
    check(node, [pol("x", "deny-ingress", ingress=[]),
                 pol("x", "a-from-y-b", {"matchLabels": {"pod": "a"}},
                     ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                                         "podSelector": {"matchLabels": {"pod": "b"}}}]}])], str(tmp_path))


def test_egress_named_ports_and_ip_blocks_on_macvlan(node: UnderlayNode, tmp_path: Any) -> None:
    check(node, [pol("y", "b-out", {"matchLabels": {"pod": "b"}},
                     egress=[{"to": [{"podSelector": {"matchLabels": {"role": "db"}}, "namespaceSelector": {}}],
                              "ports": [{"port": "serve-80-tcp"}, {"port": 81, "protocol": "UDP"}]}]),
                 pol("y", "a-in", {"matchLabels": {"pod": "a"}},
                     ingress=[{"from": [{"ipBlock": {"cidr": "10.78.0.0/24", "except": ["10.78.0.12/32"]}},
                                        {"ipBlock": {"cidr": "fd78::/64", "except": ["fd78::12/128"]}}]}])],
          str(tmp_path))


def test_a_pod_admitted_after_a_policy_change_has_the_whole_table(node: UnderlayNode, tmp_path: Any) -> None:
    engine = PolicyEngine("n1", str(tmp_path), apply=node.apply, pod_interface="eth0")
    pods = {key: pod_api(*key.split("/"), _ip(key, 4), "n1", labels) for key, (_, labels) in PODS.items()}
    engine.set_all(pods=pods, namespaces=NAMESPACES, policies={})
    first = ["x/a", "x/b", "y/a"]
    for key in first:
        engine.admit(*key.split("/"), "c", [ipaddress.ip_address(_ip(key, 4))], f"/run/netns/{node.pods[key]}")
    engine.policy_event("ADDED", pol("x", "deny-ingress", ingress=[]))           # a diff to the three tables
    late = "y/b"
    engine.admit(*late.split("/"), "c", [ipaddress.ip_address(_ip(late, 4))], f"/run/netns/{node.pods[late]}")
    have = nsexec(node.pods[late], "nft", "list", "table", *policy_nft.TABLE.split()).stdout
    assert "hook output" in have and "hook input" in have and 'oifname != "eth0"' in have, have
    got = _matrix(node, 4, 80, "TCP")
    assert got[("y/b", "x/a")] is False and got[("y/b", "y/a")] is True, got
