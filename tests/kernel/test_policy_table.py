"""The NetworkPolicy table on real nftables: every transaction the engines make (the first full
table, then one diff per event) is accepted by the kernel, and after each step the kernel holds
exactly what a fresh full transaction of the same view gives.  Three namespaces stand for three
nodes' tables; a fourth receives the full transaction for comparison.  Packets through these
tables are the cluster tier's job (tests/cluster/test_network_policy.py)."""
from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podnet.agent.policy.compiler import Compiler
from podnet.net import policy_nft
from tests.helpers.cni import netns_add, netns_del, unique
from tests.helpers.netpol_cases import CASES
from tests.helpers.netpol_world import NODES, PolicyWorld, random_policies


def _nft(ns: str, script: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"the kernel refused a transaction: {proc.stderr.strip()}\n--- script ---\n{script[:4000]}")
    return proc.stdout


def table(ns: str) -> dict[str, Any]:
    """The table as the kernel lists it, without handles, elements sorted (set order is the kernel's)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", *policy_nft.TABLE.split()],
                         capture_output=True, text=True, check=True).stdout
    sets: dict[str, Any] = {}
    maps: dict[str, Any] = {}
    chains: dict[str, list[str]] = {}
    for item in json.loads(out)["nftables"]:
        if "set" in item:
            s = item["set"]
            sets[s["name"]] = (s["type"], sorted(json.dumps(e, sort_keys=True) for e in s.get("elem", [])))
        elif "map" in item:
            m = item["map"]
            maps[m["name"]] = sorted(json.dumps(e, sort_keys=True) for e in m.get("elem", []))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(json.dumps(item["rule"]["expr"], sort_keys=True))
    return {"sets": sets, "maps": maps, "chains": chains}


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    names = {n: unique("pt" + n) for n in (*NODES, "full")}
    try:
        for ns in names.values():
            netns_add(ns)
        yield names
    finally:
        for ns in names.values():
            netns_del(ns)


def check_kernel_equals_full(world: PolicyWorld, names: dict[str, str]) -> None:
    for node, engine in world.engines.items():
        _nft(names["full"], policy_nft.full_script(Compiler(engine.view).full()))
        assert table(names[node]) == table(names["full"]), f"node {node}: the kernel's table after the diffs " \
            "is not the table a full transaction makes"


def _appliers(names: dict[str, str]) -> Callable[[str], Callable[[str], None]]:
    return lambda node: (lambda script: None if not script else (_nft(names[node], script), None)[1])


CASES_ON_KERNEL = sorted(CASES)


@pytest.mark.parametrize("case", CASES_ON_KERNEL)
def test_e2e_case_transactions(tmp_path: Any, namespaces: dict[str, str], case: str) -> None:
    v6 = CASES_ON_KERNEL.index(case) % 2 == 1          # half the cases on an IPv6 world
    world = PolicyWorld(str(tmp_path), v6=v6, apply_for=_appliers(namespaces))
    for step in CASES[case]:
        if step[0] == "probe":
            continue
        world.step(step)
        check_kernel_equals_full(world, namespaces)
    world.step(("delete-all",))
    check_kernel_equals_full(world, namespaces)
    for node in NODES:
        t = table(namespaces[node])
        assert set(t["sets"]) == set() and set(t["chains"]) == {"egress", "ingress", policy_nft.DENY_CHAIN}, \
            f"{node}: policies deleted but {sorted(t['sets'])} / {sorted(t['chains'])} remain"


@pytest.mark.parametrize("seed", range(24))
def test_generated_policy_transactions(tmp_path: Any, namespaces: dict[str, str], seed: int) -> None:
    """Random policies (IPv6 world for every third seed), relabelling and updates that rewrite a
    policy in place (its interval sets flushed and refilled: the kernel merges overlaps)."""
    rng = random.Random(1000 + seed)
    world = PolicyWorld(str(tmp_path), v6=seed % 3 == 2, apply_for=_appliers(namespaces))
    first = random_policies(rng, world.ip_of, 3)
    for p in first:
        world.step(("create", p))
    check_kernel_equals_full(world, namespaces)
    world.step(("label-pod", "x", "a", {"pod": "b", "tier": "front"}))
    world.step(("label-ns", "y", {"team": "red"}))
    check_kernel_equals_full(world, namespaces)
    for p, new in zip(first, random_policies(rng, world.ip_of, 3), strict=True):
        new["metadata"] = dict(p["metadata"])
        world.step(("update", new))
    check_kernel_equals_full(world, namespaces)


@pytest.mark.parametrize("seed", range(16))
def test_cluster_network_policy_transactions(tmp_path: Any, namespaces: dict[str, str], seed: int) -> None:
    """ClusterNetworkPolicies of both tiers with NetworkPolicies (issue 33): every transaction — the
    tiered group chains with their Pass gotos, updates of a policy's priority and rules, a
    namespace relabel moving a subject, deletions — accepted, and the kernel equal to a full one;
    nothing of them left once they are gone."""
    from tests.helpers.netpol_world import random_cluster_policies
    rng = random.Random(2000 + seed)
    world = PolicyWorld(str(tmp_path), v6=seed % 3 == 2, apply_for=_appliers(namespaces))
    cnps = random_cluster_policies(rng, 3)
    for c in cnps:
        world.step(("cnp-create", c))
    for p in random_policies(rng, world.ip_of, 2):
        world.step(("create", p))
    check_kernel_equals_full(world, namespaces)
    world.step(("label-ns", "y", {"team": "red"}))
    world.step(("label-pod", "x", "a", {"pod": "c"}))
    check_kernel_equals_full(world, namespaces)
    for c, new in zip(cnps, random_cluster_policies(rng, 3, first=10), strict=True):
        new["metadata"] = dict(c["metadata"])
        world.step(("cnp-update", new))
    check_kernel_equals_full(world, namespaces)
    world.step(("delete-all",))
    for c in cnps:
        world.step(("cnp-delete", c["metadata"]["name"]))
    check_kernel_equals_full(world, namespaces)
    for node in NODES:
        t = table(namespaces[node])
        assert set(t["sets"]) == set() and set(t["chains"]) == {"egress", "ingress", policy_nft.DENY_CHAIN}, \
            f"{node}: policies deleted but {sorted(t['sets'])} / {sorted(t['chains'])} remain"
