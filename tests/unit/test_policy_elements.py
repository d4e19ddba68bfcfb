"""A policy set's members (policy_nft.Elements) change in O(change): a pod event must not copy the
sets it touches (one holds tens of thousands of addresses in a big cluster), and the transactions
diffed from the overlays must still take the kernel exactly to the model."""
from __future__ import annotations

import random
import re
from typing import Any

import pytest

from podnet.agent.policy.cluster import ClusterView, PodInfo
from podnet.agent.policy.compiler import Compiler
from podnet.agent.policy.spec import Policy
from podnet.net import policy_nft
from podnet.net.policy_nft import MAPS, TABLE, Elements
from tests.helpers.netpol_world import PolicyWorld, random_policies


@pytest.mark.parametrize("seed", range(20))
def test_elements_behave_as_the_set_they_stand_for(seed: int) -> None:
    rng = random.Random(seed)
    universe = [f"10.0.{i // 250}.{i % 250}" for i in range(600)]
    truth = set(rng.sample(universe, 300))
    e = Elements(frozenset(truth))
    history = [(e, set(truth))]
    for _ in range(120):
        removed = set(rng.sample(universe, rng.randint(0, 6)))
        added = set(rng.sample(universe, rng.randint(0, 6)))
        e = e.changed(removed, added)
        truth = (truth - removed) | added
        assert set(e) == truth and len(e) == len(truth) and all((x in e) == (x in truth) for x in universe)
        history.append((e, set(truth)))
    for (a, ta), (b, tb) in zip(history, history[5:], strict=False):
        removed, added = a.delta(b)
        assert (removed, added) == (ta - tb, tb - ta)
        assert (a == b) == (ta == tb) and b == Elements(frozenset(tb))
    assert any(h[0].base is not history[0][0].base for h in history), "the overlays were never folded"


def test_a_pod_event_does_not_copy_the_sets_it_changes() -> None:
    """5000 pods in one selector's set: relabelling one moves one address, and the new set shares
    the old one's base (the old code built a new frozenset of all 5000 per event)."""
    view = ClusterView("n1")
    for i in range(5000):
        view.put_pod(PodInfo.make("shop", f"w{i}", {"app": "web"}, [f"10.8.{i // 250}.{i % 250 + 1}"], "n2", False,
                                  [], "1"))
    view.put_pod(PodInfo.make("shop", "db", {"app": "db"}, ["10.9.0.1"], "n1", False, [], "1"))
    view.put_policy(Policy.parse({
        "metadata": {"namespace": "shop", "name": "db-from-web"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}}))
    c = Compiler(view)
    before = c.full()
    big = next(name for name, e in before.elements.items() if len(e) == 5000)
    view.put_pod(PodInfo.make("shop", "w7", {"app": "batch"}, ["10.8.0.8"], "n2", False, [], "2"))
    after = c.on_addresses({"10.8.0.8"})
    assert len(after.elements[big]) == 4999 and "10.8.0.8" not in after.elements[big]
    assert after.elements[big].base is before.elements[big].base
    script = policy_nft.diff_script(before, after)
    assert script == f"delete element {TABLE} {big} {{ 10.8.0.8 }}\n"


class KernelSets:
    """What nft would hold in the policy table's sets after each transaction (maps aside): the
    transactions are replayed line by line, so a wrong diff shows as a set that differs."""

    LINE = re.compile(rf"^(add|delete|flush) (element|set|table) {re.escape(TABLE)}(?: (\S+))?(?: \{{ (.*) \}})?")

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}

    def apply(self, script: str) -> None:
        for line in script.splitlines():
            m = self.LINE.match(line)
            if not m:
                continue
            verb, what, name, body = m.groups()
            if what == "table":
                if verb == "delete":
                    self.sets.clear()
                continue
            if name in MAPS:
                continue
            if what == "set":
                if verb == "add":
                    self.sets.setdefault(name, set())
                elif verb == "flush":
                    self.sets[name] = set()
                else:
                    del self.sets[name]
            elif verb == "add":
                self.sets[name] |= {e.strip() for e in body.split(",")}
            else:
                missing = {e.strip() for e in body.split(",")} - self.sets[name]
                assert not missing, f"delete of elements {name} does not hold: {missing}"
                self.sets[name] -= {e.strip() for e in body.split(",")}


@pytest.mark.parametrize("seed", range(40))
def test_the_transactions_take_the_kernel_to_the_model(tmp_path: Any, seed: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Random policies, then many relabels (overlays folded early, so both paths of the diff run):
    after every step the replayed transactions hold exactly the programmed model's members."""
    monkeypatch.setattr(policy_nft, "FOLD_MIN", 2)
    rng = random.Random(seed)
    kernels: dict[str, KernelSets] = {}

    def apply_for(node: str) -> Any:
        kernels[node] = KernelSets()
        return kernels[node].apply

    world = PolicyWorld(str(tmp_path), v6=seed % 4 == 3, apply_for=apply_for)
    steps: list[tuple[Any, ...]] = [("create", p) for p in random_policies(rng, world.ip_of)]
    for _ in range(40):
        steps.append(("label-pod", rng.choice("xyz"), rng.choice("abc"),
                      {"pod": rng.choice("abc"), rng.choice(("tier", "role")): rng.choice(("front", "back", "a"))}))
    for step in steps:
        world.step(step)
        for node, e in world.engines.items():
            model = e.programmed
            want = {name: set(model.elements.get(name, ())) for name in model.sets}
            assert kernels[node].sets == want, f"seed {seed}, node {node}, after {step[0]}"
