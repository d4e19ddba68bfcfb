"""The relay (issue 35) between a REAL API server and the agents: the agents of a 2-node lab
(kubernetes datastore, NetworkPolicy on) list and watch every cluster-wide kind from `podnet
relay` — nothing cluster-wide from the API server — and enforce exactly what the reference model
says, through policy, pod and namespace changes; the relay killed, the table stays as it was, and
a change made meanwhile lands once a new relay is up (the agents' versions are unknown to it:
410, a relist from the relay)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from podnet.lab import Cluster
from podnet.lab import relay as lab_relay
from podnet.lab.cluster import ETCD_ADDR
from podnet.lab.control_plane import https_get
from podnet.lab.netpol import PolicyLab
from tests.helpers.kubernetes import needs_kubernetes
from tests.helpers.netpol_cases import CASES, pods, pol
from tests.helpers.netpol_steps import check_matrix, policy_lab, run_steps

pytestmark = needs_kubernetes

THROUGH_THE_RELAY = ["default-deny-ingress", "ingress from updated pod", "ingress from updated namespace",
                     "deny egress by podSelector", "policies deleted"]


@pytest.fixture(scope="module")
def lab() -> Iterator[PolicyLab]:
    with policy_lab(Cluster(2, "vxlan", datastore="kubernetes", network_policy=True, relay=True)) as pl:
        yield pl


def relay_metrics(c: Cluster) -> dict[str, float]:
    text = https_get(c.fab, f"{lab_relay.url(ETCD_ADDR)}/metrics", c.cp.pki.ca.cert, timeout=5)[1].decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line}


def test_the_agents_follow_the_cluster_through_the_relay(lab: PolicyLab) -> None:
    c = lab.c
    m = relay_metrics(c)
    # each agent: Pods, Namespaces, Nodes, NetworkPolicies listed and watched at the relay (this
    # lab has no ClusterNetworkPolicy CRD: the relay answers 404 as the API server would)
    assert m["podnet_relay_watches_total"] >= 2 * 4 and m["podnet_relay_lists_total"] >= 2 * 4, m
    assert m['podnet_relay_objects{kind="Pod"}'] >= len(lab.pods), m
    for i in range(2):           # the other node's pod CIDR came from the relay's Node feed
        assert c.podnet_routes(i), f"node {i + 1} has no route to the other node"
    for i in range(2):
        cfg = json.load(open(f"{c.work}/agent-n{i + 1}.json"))
        assert cfg["relay"] == lab_relay.url(ETCD_ADDR)


@pytest.mark.parametrize("case", THROUGH_THE_RELAY)
def test_policy_cases_through_the_relay(lab: PolicyLab, case: str) -> None:
    lab.reset()
    run_steps(lab, case, CASES[case])


def test_the_relay_gone_the_table_stays_and_a_change_lands_after_it_is_back(lab: PolicyLab) -> None:
    c = lab.c
    lab.reset()
    lab.apply(pol("x", "deny-a", pods(pod="a"), ingress=[]))
    check_matrix(lab, 80, "TCP", "deny x/a")
    lab_relay.stop_in(c)
    check_matrix(lab, 80, "TCP", "the relay down: still enforced")
    # a change while no relay runs: the agents cannot see it yet (applied without waiting)
    rv = lab.kube.apply_policy(pol("x", "deny-b", pods(pod="b"), ingress=[]))
    lab.policies["x/deny-b"] = pol("x", "deny-b", pods(pod="b"), ingress=[])
    lab_relay.start_in(c)
    # the agents' watch versions are unknown to the new relay: 410, a relist from it, the new policy
    # (within the agents' reconnect backoff, at most 10 s, and a relist)
    lab.wait_seen("NetworkPolicy/x/deny-b", rv, timeout=60)
    check_matrix(lab, 80, "TCP", "deny x/a and x/b after the relay came back")
    lab.reset()
