"""`podnet demo` and `podnet lab down` return only once everything they started has exited and
every namespace is gone (issue 37): a script that runs a demo and then looks for leftovers, or
starts the next lab at once, must find nothing — checked the moment the command returns, with no
waiting.  Before the fix the demos' BIRD and wireguard-go processes (the agents start them in
sessions of their own) were still there for up to a second."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers.lab import lab_namespaces, lab_processes

pytestmark = pytest.mark.skipif(not shutil.which("bird") or not shutil.which("wireguard-go"),
                                reason="needs bird2 and wireguard-go (scripts/setup.sh installs them)")


def podnet(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podnet.cli", *argv], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def assert_nothing_new(before_procs: dict[int, str], before_ns: set[str]) -> None:
    left = {pid: what for pid, what in lab_processes().items() if pid not in before_procs}
    assert left == {}, f"still running when the command returned: {left}"
    assert lab_namespaces() - before_ns == set(), "namespaces left"


@pytest.mark.parametrize("argv", [("--backend", "bgp", "--nodes", "2"), ("--encryption", "wireguard", "--nodes", "2")],
                         ids=["bgp", "wireguard"])
def test_the_demo_returns_only_when_all_it_started_is_gone(argv: tuple[str, ...]) -> None:
    procs, ns = lab_processes(), lab_namespaces()
    p = podnet("demo", *argv)
    assert p.returncode == 0 and "PASS" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    assert_nothing_new(procs, ns)


def test_lab_down_returns_only_when_all_the_lab_started_is_gone() -> None:
    procs, ns = lab_processes(), lab_namespaces()
    up = podnet("lab", "up", "--name", "teardown", "--nodes", "2", "--backend", "bgp", "--encryption", "wireguard")
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        started = {pid: what for pid, what in lab_processes().items() if pid not in procs}
        kinds = set(started.values())
        assert {"bird", "wireguard-go", "etcd", "podnet agent"} <= kinds, kinds
        # commands that need the datastore find the lab's, as kubectl finds its context (issue 34)
        ls = podnet("node", "ls", "--lab", "teardown", "--json")
        assert ls.returncode == 0 and {n["node"] for n in json.loads(ls.stdout)} >= {"n1", "n2"}, ls.stdout + ls.stderr
        pods = json.loads(podnet("lab", "status", "--name", "teardown", "--json").stdout)["pods"]
        a, b = (next(p["netns"].rsplit("/", 1)[1] for p in pods if p["node"] == n) for n in ("n1", "n2"))
        tr = podnet("trace", "--lab", "teardown", a, b)
        assert tr.returncode == 0 and "path works" in tr.stdout, tr.stdout + tr.stderr
    finally:
        down = podnet("lab", "down", "--name", "teardown")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_nothing_new(procs, ns)
