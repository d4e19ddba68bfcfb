"""The README's main job: `podnet demo` runs to PASS and leaves nothing behind — the etcd cluster
demo and the NetworkPolicy demo on the real control plane."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers.kubernetes import needs_kubernetes


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("pnlab-")}


def _demo(*argv: str) -> str:
    before = _namespaces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", *argv], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert _namespaces() <= before, f"the demo left namespaces: {sorted(_namespaces() - before)}"
    return p.stdout


def test_cluster_demo_passes() -> None:
    out = _demo("--nodes", "3", "--pods-per-node", "2")
    assert "30/30 pod pairs reachable" in out and "podnet demo: PASS" in out, out[-1500:]


@needs_kubernetes
def test_policy_demo_passes() -> None:
    out = _demo("--datastore", "kubernetes", "--policy")
    assert out.count("matches the model") == 5 and "podnet demo --policy: PASS" in out, out[-3000:]
    assert "30 of 72 open" in out, "deny-all in x must cut 42 of the 72 connections"
