"""ClusterNetworkPolicy (issue 33) on the NetworkPolicy engine, checked without a kernel against the
reference model (tests/helpers/netpol_model.py, written from the API's field documentation, not
from the engine): the tiers' order, priorities, Accept/Deny/Pass, subjects by namespace and by pod,
peers by namespace, pod and network, protocols with ports and ranges — hand-written cases from
the API's own examples, then generated ones mixed with NetworkPolicies and label changes.  Every
step's incremental table must equal a full compile."""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.agent.policy.cnp import ClusterPolicy
from podnet.net import policy_nft
from tests.helpers.netpol_cases import NS_LABEL
from tests.helpers.netpol_world import PolicyWorld, cnp, random_cluster_policies, random_policies

PROBES = ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"))


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    scripts: list[str] = []
    monkeypatch.setattr(policy_nft, "apply", lambda script: scripts.append(script) if script else None)
    yield scripts


def ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {NS_LABEL: name}}


def np(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def check(world: PolicyWorld, steps: list[tuple[Any, ...]], denied_somewhere: bool = True) -> None:
    for step in steps:
        world.step(step)
        world.assert_incremental_is_full()
        for port, proto in PROBES:
            bad = world.mismatches(port, proto)
            assert not bad, f"after {step[0]} {step[1] if len(step) > 1 else ''}: {len(bad)} cells differ:\n" + \
                "\n".join(bad[:12])
    if denied_somewhere:
        assert any(not v for v in world.reference().matrix(80, "TCP").values()), "the case denies nothing"


def allowed(world: PolicyWorld, src: str, dst: str, port: int = 80, proto: str = "TCP") -> bool:
    pods = {f"{p.namespace}/{p.name}": p for p in world.pods}
    return world.enforced(pods[src], pods[dst], port, proto)


DENY_FROM_Y = cnp("deny-from-y", "Admin", 10, {"namespaces": ns("x")}, ingress=[
    {"name": "no-y", "action": "Deny", "from": [{"namespaces": ns("y")}]}])
ALLOW_ALL_NP_X = np("x", "allow-all", {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]})
DENY_ALL_NP_X = np("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})


def test_admin_deny_cannot_be_overridden_by_a_networkpolicy(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    check(w, [("create", ALLOW_ALL_NP_X), ("cnp-create", DENY_FROM_Y)])
    assert not allowed(w, "y/a", "x/b") and allowed(w, "z/a", "x/b") and allowed(w, "y/a", "z/b")


def test_admin_accept_overrides_a_networkpolicy_deny_and_pass_hands_over(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    accept = cnp("accept-z", "Admin", 5, {"namespaces": ns("x")}, ingress=[
        {"action": "Accept", "from": [{"namespaces": ns("z")}]},
        {"action": "Pass", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}}]},
        {"action": "Deny", "from": [{"namespaces": {}}]}])
    check(w, [("create", DENY_ALL_NP_X), ("cnp-create", accept)])
    assert allowed(w, "z/b", "x/a"), "Accept: NetworkPolicy's deny-all is not consulted"
    assert not allowed(w, "y/a", "x/a"), "Pass: NetworkPolicy decides (deny-all)"
    assert not allowed(w, "y/b", "x/a"), "Deny"
    check(w, [("delete", "x", "deny-all")])
    assert allowed(w, "y/a", "x/a"), "Pass with no NetworkPolicy: the default allows"


def test_priority_orders_policies_and_rules_keep_their_order(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    low = cnp("wide-deny", "Admin", 20, {"namespaces": {}}, ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])
    high = cnp("allow-a", "Admin", 10, {"namespaces": {}}, ingress=[
        {"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}}]}])
    check(w, [("cnp-create", low), ("cnp-create", high)])
    assert allowed(w, "y/a", "x/b") and not allowed(w, "y/b", "x/a")
    swapped = dict(low, spec=dict(low["spec"], priority=5))          # the deny now comes first
    check(w, [("cnp-update", swapped)])
    assert not allowed(w, "y/a", "x/b")


def test_baseline_applies_only_where_no_networkpolicy_selects(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    baseline = cnp("default-deny", "Baseline", 0, {"namespaces": {}}, ingress=[
        {"action": "Deny", "from": [{"namespaces": {}}]}])
    allow_y = np("x", "from-y", {"podSelector": {"matchLabels": {"pod": "a"}},
                                 "ingress": [{"from": [{"namespaceSelector": ns("y")}]}], "policyTypes": ["Ingress"]})
    check(w, [("cnp-create", baseline), ("create", allow_y)])
    assert allowed(w, "y/b", "x/a"), "x/a: NetworkPolicy decides, the baseline is not consulted"
    assert not allowed(w, "z/b", "x/a"), "… and it allows y only"
    assert not allowed(w, "y/b", "x/b"), "x/b: no NetworkPolicy: the baseline denies"


def test_egress_networks_ports_and_ranges(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    egress = cnp("egress", "Admin", 1, {"pods": {"namespaceSelector": ns("x"), "podSelector": {}}}, egress=[
        {"action": "Accept", "to": [{"networks": ["@y/a"]}], "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
        {"action": "Deny", "to": [{"networks": ["@y/b/16"]}],
         "protocols": [{"tcp": {"destinationPort": {"range": {"start": 79, "end": 81}}}}, {"udp": {}}]}])
    check(w, [("cnp-create", egress)])
    assert allowed(w, "x/a", "y/a") and not allowed(w, "x/a", "y/a", 81), "80 accepted, 81 falls to the deny range"
    assert not allowed(w, "x/a", "y/a", 80, "UDP") and allowed(w, "y/a", "x/a")


def test_a_namespace_label_moves_the_subject(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    labelled = cnp("red-isolated", "Admin", 3, {"namespaces": {"matchLabels": {"team": "red"}}}, ingress=[
        {"action": "Deny", "from": [{"namespaces": {}}]}])
    check(w, [("cnp-create", labelled), ("label-ns", "y", {"team": "red"})])
    assert not allowed(w, "x/a", "y/a")
    check(w, [("label-ns", "y", {"team": "blue"})], denied_somewhere=False)
    assert allowed(w, "x/a", "y/a")


def test_equal_priorities_are_taken_by_name_as_documented(tmp_path: Any) -> None:
    w = PolicyWorld(str(tmp_path))
    a = cnp("a-accept", "Admin", 7, {"namespaces": {}}, ingress=[{"action": "Accept", "from": [{"namespaces": ns("y")}]}])
    b = cnp("b-deny", "Admin", 7, {"namespaces": {}}, ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}])
    check(w, [("cnp-create", b), ("cnp-create", a)])
    assert allowed(w, "y/a", "x/a") and not allowed(w, "z/a", "x/a")


def test_a_rule_podnet_cannot_enforce_fails_closed_as_the_api_says() -> None:
    raw = cnp("x", "Admin", 1, {"namespaces": {}}, egress=[
        {"action": "Accept", "to": [{"nodes": {}}]}, {"action": "Pass", "to": [{"domainNames": ["a.example"]}]},
        {"action": "Deny", "to": [{"namespaces": {}}], "protocols": [{"destinationNamedPort": "web"}]}])
    cp = ClusterPolicy.parse(raw)
    accept, pass_, deny = cp.egress
    assert accept.match_none and not accept.match_all, "Accept: matches nothing"
    assert pass_.match_all and pass_.effective == "Deny", "Pass: treated as Deny-all"
    assert deny.match_all and "destinationNamedPort" in deny.unsupported
    with pytest.raises(ValueError, match=r"spec\.tier"):
        ClusterPolicy.parse(cnp("y", "Developer", 1, {"namespaces": {}}))
    with pytest.raises(ValueError, match=r"spec\.priority"):
        ClusterPolicy.parse(cnp("y", "Admin", 1001, {"namespaces": {}}))


@pytest.mark.parametrize("seed", range(120))
def test_generated_cluster_policies_with_networkpolicies_match_the_model(tmp_path: Any, seed: int) -> None:
    rng = random.Random(seed)
    w = PolicyWorld(str(tmp_path), v6=seed % 4 == 3)
    steps: list[tuple[Any, ...]] = [("cnp-create", c) for c in random_cluster_policies(rng)]
    steps += [("create", p) for p in random_policies(rng, w.ip_of, rng.randint(0, 2))]
    for i in range(3):
        roll = rng.random()
        if roll < 0.3:
            steps.append(("label-pod", rng.choice("xyz"), rng.choice("abc"), {"pod": rng.choice("abc")}))
        elif roll < 0.55:
            steps.append(("label-ns", rng.choice("xyz"), {"team": rng.choice(("red", "blue"))}))
        elif roll < 0.8:
            steps += [("cnp-create", c) for c in random_cluster_policies(rng, 1, first=10 + i)]
        else:
            steps.append(("cnp-delete", steps[0][1]["metadata"]["name"]))
    seen: set[str] = set()
    for step in steps:
        if step[0] == "cnp-delete":
            if step[1] not in w.cluster_policies:
                continue
        if step[0] == "cnp-create" and step[1]["metadata"]["name"] in seen:
            step = ("cnp-update", step[1])
        if step[0] in ("cnp-create", "cnp-update"):
            seen.add(step[1]["metadata"]["name"])
        check(w, [step], denied_somewhere=False)


def test_the_generated_cases_really_decide(tmp_path: Any) -> None:
    """Most generated worlds deny some cells and accept some through an Admin Accept (else the
    comparison proves little)."""
    denying = 0
    for seed in range(40):
        rng = random.Random(seed)
        w = PolicyWorld(str(tmp_path / str(seed)))
        for c in random_cluster_policies(rng):
            w.step(("cnp-create", c))
        if any(not v for v in w.reference().matrix(80, "TCP").values()):
            denying += 1
    assert denying >= 20, denying


@pytest.mark.parametrize("seed", range(25))
def test_explain_agrees_with_the_model_and_names_what_decided(tmp_path: Any, seed: int) -> None:
    """`podnet policy explain` walks the same tiers: its verdict equals the model's on every pair,
    and a ClusterNetworkPolicy decision names its tier, policy and rule."""
    from podnet.agent.policy.explain import explain
    rng = random.Random(1000 + seed)
    w = PolicyWorld(str(tmp_path))
    for c in random_cluster_policies(rng):
        w.step(("cnp-create", c))
    for p in random_policies(rng, w.ip_of, rng.randint(0, 1)):
        w.step(("create", p))
    ref, view = w.reference(), w.engines["n1"].view
    for s in w.pods:
        for d in w.pods:
            if s is d:
                continue
            for port, proto in ((80, "TCP"), (81, "UDP")):
                got = explain(view, f"{s.namespace}/{s.name}", f"{d.namespace}/{d.name}", port, proto)
                assert got["allowed"] == ref.allowed(s, d, port, proto), (s.name, d.name, port, proto, got)
                for part in (got["egress"], got["ingress"]):
                    by = part.get("decided_by") or {}
                    if by.get("tier") in ("Admin", "Baseline"):
                        assert by["policy"] in w.cluster_policies and by["action"] in ("Accept", "Deny")
                        assert part["allowed"] == (by["action"] == "Accept")


def test_metrics_say_which_kind_of_change_was_programmed_and_how_many_of_each_kind(tmp_path: Any) -> None:
    """`podnet_policy_program_seconds{trigger}` counts a ClusterNetworkPolicy change under its own
    kind (not as a NetworkPolicy), and `podnet_policies{kind,tier}` follows adds and deletes."""
    from podnet.agent.metrics import REGISTRY
    from podnet.agent.policy.engine import PolicyEngine

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    e = PolicyEngine("n1", str(tmp_path))
    e.set_all(pods={}, namespaces={"x": {NS_LABEL: "x"}, "y": {NS_LABEL: "y"}}, policies={}, cluster_policies={})
    cnp_before = value("podnet_policy_program_seconds_count", trigger="ClusterNetworkPolicy")
    np_before = value("podnet_policy_program_seconds_count", trigger="NetworkPolicy")
    e.cluster_policy_event("ADDED", DENY_FROM_Y)
    e.cluster_policy_event("ADDED", cnp("base", "Baseline", 5, {"namespaces": ns("y")}, ingress=[
        {"name": "deny", "action": "Deny", "from": [{"namespaces": ns("x")}]}]))
    e.policy_event("ADDED", DENY_ALL_NP_X)
    assert value("podnet_policy_program_seconds_count", trigger="ClusterNetworkPolicy") == cnp_before + 2
    assert value("podnet_policy_program_seconds_count", trigger="NetworkPolicy") == np_before + 1
    assert value("podnet_policies", kind="ClusterNetworkPolicy", tier="Admin") == 1
    assert value("podnet_policies", kind="ClusterNetworkPolicy", tier="Baseline") == 1
    assert value("podnet_policies", kind="NetworkPolicy", tier="") == 1
    e.cluster_policy_event("DELETED", DENY_FROM_Y)
    assert value("podnet_policies", kind="ClusterNetworkPolicy", tier="Admin") == 0
