"""The NetworkPolicy engine and compiler, checked against the reference model without a kernel.

Every node runs its own engine (the table it would program is captured instead of applied); a
connection is allowed when the source node's table lets it out (egress) and the destination
node's lets it in (ingress) — the verdicts read from the generated rules by tests/helpers/nft_eval.
The expected verdict for every pair comes from tests/helpers/netpol_model.py, written from the API
documentation.  Each step is applied as the agent applies it (events → incremental model → diff),
and the incremental model must equal a fresh full compile of the same view.  The kernel tier runs
the same tables on real nftables (tests/kernel/test_policy_table.py)."""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.agent.policy.compiler import Compiler
from podnet.agent.policy.engine import PolicyEngine
from podnet.agent.policy.spec import Policy
from podnet.net import policy_nft
from tests.helpers.netpol_cases import CASES, NS_LABEL
from tests.helpers.netpol_world import PolicyWorld, pod_api, random_policies


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Capture the transactions instead of running nft (the engines' tables are their models)."""
    scripts: list[str] = []
    monkeypatch.setattr(policy_nft, "apply", lambda script: scripts.append(script) if script else None)
    yield scripts


def World(tmp_path: Any, v6: bool = False) -> PolicyWorld:
    return PolicyWorld(str(tmp_path), v6)


def run_case(world: PolicyWorld, steps: list[tuple[Any, ...]]) -> None:
    for i, step in enumerate(steps):
        if step[0] == "probe":
            _, port, proto = step
            bad = world.mismatches(port, proto)
            assert not bad, f"step {i} ({port}/{proto}): {len(bad)} cells differ:\n" + "\n".join(bad[:12])
        else:
            world.step(step)
            world.assert_incremental_is_full()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_e2e_case_matches_the_reference_model(tmp_path: Any, case: str, v6: bool) -> None:
    world = World(tmp_path, v6)
    run_case(world, CASES[case])
    # every case's last probe, repeated on the other ports and protocols: a table that is right on
    # the probed port only is not right
    for port, proto in ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"), (80, "SCTP")):
        assert not world.mismatches(port, proto), f"{case}: {port}/{proto} after the last step"


def test_the_e2e_cases_really_isolate(tmp_path: Any) -> None:
    """The truth tables are not all-allow: most cases deny some cells (else the checks prove little)."""
    denying = 0
    for case, steps in CASES.items():
        world = World(tmp_path / case.replace(" ", "_").replace("/", "_"))
        for step in steps:
            if step[0] != "probe":
                world.step(step)
        if any(not v for v in world.reference().matrix(80, "TCP").values()):
            denying += 1
    assert denying >= 40, denying


@pytest.mark.parametrize("seed", range(160))
def test_generated_policies_match_the_reference_model(tmp_path: Any, seed: int) -> None:
    """Random selectors, ports, ipBlocks (seeded); then random relabelling, namespace labels and
    deletions, each checked on every pair, TCP and UDP, ports 80 and 81."""
    rng = random.Random(seed)
    world = World(tmp_path, v6=seed % 4 == 3)
    steps: list[tuple[Any, ...]] = [("create", p) for p in random_policies(rng, world.ip_of)]
    for _ in range(3):
        roll = rng.random()
        if roll < 0.4:
            ns, name = rng.choice(("x", "y", "z")), rng.choice(("a", "b", "c"))
            steps.append(("label-pod", ns, name, {"pod": rng.choice("abc"), rng.choice(("tier", "role")): rng.choice(
                ("front", "back", "a"))}))
        elif roll < 0.7:
            steps.append(("label-ns", rng.choice(("x", "y", "z")), {"team": rng.choice(("red", "blue"))}))
        else:
            steps += [("create", p) for p in random_policies(rng, world.ip_of, 1)]
            steps[-1][1]["metadata"]["name"] = f"late-{len(steps)}"
    if rng.random() < 0.5 and world.policies is not None:
        steps.append(("delete-all",))
    for step in steps:
        world.step(step)
        world.assert_incremental_is_full()
        for port, proto in ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")):
            bad = world.mismatches(port, proto)
            assert not bad, f"seed {seed}, after {step[0]}: {len(bad)} cells differ:\n" + "\n".join(bad[:12])


def test_a_pod_change_is_elements_only(tmp_path: Any, no_kernel: list[str]) -> None:
    """Relabelling a pod, or a new pod, changes set and map elements — never a chain's rules."""
    world = World(tmp_path)
    for step in CASES["podSelector OR namespaceSelector"][:-1] + CASES["ingress from a namespace on one named port"][:-2]:
        world.step(step)
    no_kernel.clear()
    world.step(("label-pod", "y", "b", {"pod": "a"}))
    world.step(("label-pod", "x", "c", {"pod": "b"}))
    assert no_kernel, "the relabelling changed nothing"
    for script in no_kernel:
        for line in script.splitlines():
            assert line.startswith(("add element", "delete element")), line


def test_policy_types_default_and_peers_parse() -> None:
    block = {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
    p = Policy.parse({"metadata": {"namespace": "x", "name": "p"}, "spec": {"podSelector": {}, "egress": [{"to": [block]}]}})
    assert p.isolates_ingress and p.isolates_egress
    q = Policy.parse({"metadata": {"namespace": "x", "name": "q"}, "spec": {"podSelector": {}}})
    assert q.isolates_ingress and not q.isolates_egress
    with pytest.raises(ValueError, match="protocol"):
        Policy.parse({"metadata": {"namespace": "x", "name": "r"},
                      "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}})


def test_admission_fails_closed_then_opens(tmp_path: Any) -> None:
    """A pod admitted before the engine has the cluster, or one the API cannot be asked about, is
    denied both ways; once its policy can be computed it gets exactly what the model says."""
    calls: list[tuple[str, str]] = []
    api_up = {"up": False}
    x_a = pod_api("x", "new", "10.244.9.9", "n1", {"pod": "a"})

    def fetch(ns: str, name: str) -> dict[str, Any] | None:
        calls.append((ns, name))
        if not api_up["up"]:
            raise ConnectionError("connection refused")
        return x_a

    events: list[tuple[str, ...]] = []
    e = PolicyEngine("n1", str(tmp_path), fetch_pod=fetch, announce=lambda *a: events.append(a))
    import ipaddress
    ip = ipaddress.ip_address("10.244.9.9")
    e.admit("x", "new", "c1", [ip])                       # before the first list: deny
    assert e.programmed.maps["in4"].get("10.244.9.9") == policy_nft.DENY_CHAIN
    assert e.programmed.maps["eg4"].get("10.244.9.9") == policy_nft.DENY_CHAIN
    e.set_all(pods={}, namespaces={"x": {NS_LABEL: "x"}}, policies={})
    assert e.programmed.maps["in4"].get("10.244.9.9") == policy_nft.DENY_CHAIN, "a resync must keep the denial"
    e.admit("x", "new", "c1", [ip])                       # the API is down: still denied, an Event says why
    assert calls and e.programmed.maps["in4"].get("10.244.9.9") == policy_nft.DENY_CHAIN
    assert any(ev[3] == "PolicyUnknown" and "unreachable" in ev[4] for ev in events), events
    api_up["up"] = True
    e.retry_denied()                               # no policy selects it: open
    assert "10.244.9.9" not in e.programmed.maps["in4"] and not e.view.denied
    e.release("x", "new", "c1")
    assert not any(e.programmed.maps.values())


def test_local_pods_survive_a_restart(tmp_path: Any) -> None:
    """The addresses CNI ADD gave are persisted: a new engine maps them before kubelet reports them."""
    import ipaddress
    e = PolicyEngine("n1", str(tmp_path))
    e.set_all(pods={}, namespaces={}, policies={"x/deny": {"metadata": {"namespace": "x", "name": "deny"},
                                                           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}})
    e.pod_event("ADDED", pod_api("x", "p", "10.244.9.1", "n1", {}) | {"status": {}})   # no IP reported yet
    e.admit("x", "p", "c1", [ipaddress.ip_address("10.244.9.1")])
    assert "10.244.9.1" in e.programmed.maps["in4"]
    again = PolicyEngine("n1", str(tmp_path))
    again.set_all(pods={"x/p": pod_api("x", "p", "10.244.9.1", "n1", {}) | {"status": {}}}, namespaces={},
                  policies={"x/deny": {"metadata": {"namespace": "x", "name": "deny"},
                                       "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}})
    assert "10.244.9.1" in again.programmed.maps["in4"]


def test_a_reused_address_follows_its_new_pod(tmp_path: Any) -> None:
    """CNI gives a deleted pod's address to a new pod before the API has dropped the old one: the
    address is governed by the new pod's policy at once, and the old pod's late deletion does not
    unmap it.  An older sandbox's DEL leaves the pod's newer sandbox alone."""
    import ipaddress
    deny_x = {"metadata": {"namespace": "x", "name": "deny"}, "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                                                                       "policyTypes": ["Ingress"]}}
    e = PolicyEngine("n1", str(tmp_path))
    old = pod_api("x", "old", "10.244.9.5", "n1", {"pod": "a"})
    new = pod_api("y", "new", "10.244.9.5", "n1", {"pod": "a"}) | {"status": {}}
    e.set_all(pods={"x/old": old}, namespaces={}, policies={"x/deny": deny_x})
    assert e.programmed.maps["in4"].get("10.244.9.5"), "the old pod is isolated"
    ip = ipaddress.ip_address("10.244.9.5")
    e.admit("x", "old", "c-old", [ip])
    e.release("x", "old", "c-old")
    e.pod_event("ADDED", new)
    e.admit("y", "new", "c-new", [ip])       # namespace y: no policy
    assert "10.244.9.5" not in e.programmed.maps["in4"], "the new pod must not inherit the old pod's isolation"
    assert e.programmed == Compiler(e.view).full()
    e.pod_event("DELETED", old)
    assert "10.244.9.5" not in e.programmed.maps["in4"]
    assert e.programmed == Compiler(e.view).full()
    e.policy_event("ADDED", {"metadata": {"namespace": "y", "name": "deny"}, "spec": {"podSelector": {},
                                                                                      "policyTypes": ["Ingress"]}})
    assert e.programmed.maps["in4"].get("10.244.9.5"), "now a policy isolates the new pod"
    e.admit("y", "new", "c-newer", [ipaddress.ip_address("10.244.9.6")])
    e.release("y", "new", "c-new")           # the older sandbox's DEL, late
    assert e.programmed.maps["in4"].get("10.244.9.6"), "the newer sandbox keeps its isolation"
    assert e.programmed == Compiler(e.view).full()


def test_pod_events_in_one_batch_program_what_they_do_one_by_one(tmp_path: Any, no_kernel: list[str]) -> None:
    """The watch hands queued pod events to the engine together (policy/watch.py): the table and
    the versions seen are those of the same events one at a time, in one transaction."""
    rng = random.Random(7)
    namespaces = {ns: {NS_LABEL: ns} for ns in ("x", "y", "z")}
    start = {f"{ns}/p{i}": pod_api(ns, f"p{i}", f"10.244.{i}.{j + 1}", f"n{1 + i % 2}", {"pod": rng.choice("abc")})
             for j, ns in enumerate(namespaces) for i in range(4)}
    ip_of = {key: obj["status"]["podIP"] for key, obj in start.items()}
    policies = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in random_policies(rng, ip_of, 6)}
    events: list[tuple[str, dict[str, Any]]] = []
    for k in range(40):
        key = rng.choice(sorted(start))
        obj = json_copy(start[key])
        obj["metadata"]["resourceVersion"] = str(100 + k)
        if rng.random() < 0.2:
            events.append(("DELETED", obj))
        else:
            obj["metadata"]["labels"] = {"pod": rng.choice("abc")}
            events.append(("MODIFIED", obj))
    one, batch = PolicyEngine("n1", str(tmp_path / "one")), PolicyEngine("n1", str(tmp_path / "batch"))
    for e in (one, batch):
        e.set_all(pods=dict(start), namespaces=namespaces, policies=policies)
    for kind, obj in events:
        one.pod_event(kind, obj)
    before = len(no_kernel)
    batch.pod_events(events)
    assert len(no_kernel) - before <= 1, "a batch is one transaction"
    assert batch.programmed == one.programmed
    assert batch.seen == one.seen
    assert {k: p.version for k, p in batch.view.pods.items()} == {k: p.version for k, p in one.view.pods.items()}


def json_copy(obj: dict[str, Any]) -> dict[str, Any]:
    import json
    return dict(json.loads(json.dumps(obj)))
