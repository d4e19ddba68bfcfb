"""The CLI's face (issue 34): every command, when what it needs is missing or unreachable (etcd, the
API server, the agent's socket, a file, a lab), exits non-zero with one line naming what and where —
never a traceback; numbers that make no sense are refused by the argument parser.  Each command of
`podnet` is listed here (a test fails when one is added without a case)."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from podnet.cli import parser

ETCD = "http://127.0.0.1:9"          # nothing listens on port 9: refused at once
CASES: dict[str, tuple[list[str], int, str]] = {    # command → (argv, exit status, what the line names)
    "install": (["install", "--bin-dir", "/proc/nope/bin"], 1, "/proc/nope"),
    "manifests": (["manifests", "--datastore", "etcd"], 2, "--etcd"),
    "demo": (["demo", "--nodes", "0"], 2, "--nodes"),
    "lab up": (["lab", "up", "--nodes", "0"], 2, "--nodes"),
    "lab status": (["lab", "status", "--name", "nope"], 1, "nope"),
    "lab exec": (["lab", "exec", "--name", "nope", "n1", "--", "true"], 1, "nope"),
    "lab image-load": (["lab", "image-load", "--name", "nope", "/nope.tar"], 1, "nope"),
    "lab kubectl": (["lab", "kubectl", "--name", "nope", "--", "get", "nodes"], 1, "nope"),
    "lab down": (["lab", "down", "--name", "nope"], 1, "nope"),
    "agent": (["agent", "--config", "/nope/agent.yaml"], 2, "/nope/agent.yaml"),
    "doctor": (["doctor", "--socket", "/nope.sock", "--bin-dir", "/nope"], 1, "/nope"),
    "health": (["health", "--socket", "/nope.sock"], 1, "/nope.sock"),
    "ipam pool add": (["ipam", "pool", "add", "p", "10.9.0.0/16", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam pool ls": (["ipam", "pool", "ls", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam pool rm": (["ipam", "pool", "rm", "p", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam ls": (["ipam", "ls", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam show": (["ipam", "show", "10.9.0.1", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam release": (["ipam", "release", "10.9.0.1", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam check": (["ipam", "check", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam gc": (["ipam", "gc", "--node", "n1", "--network", "x", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "ipam reclaim": (["ipam", "reclaim", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "neutron ports": (["neutron", "ports", "--url", "http://127.0.0.1:9", "--network", "n"], 1, "127.0.0.1:9"),
    "neutron pairs": (["neutron", "pairs", "--url", "http://127.0.0.1:9", "--network", "n"], 1, "127.0.0.1:9"),
    "neutron gc": (["neutron", "gc", "--network", "n", "--node", "n1", "--cni-network", "x"], 1, "--url"),
    "node ls": (["node", "ls", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "node rm": (["node", "rm", "n9", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "node rotate-key": (["node", "rotate-key", "n9", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "dhcp leases": (["dhcp", "leases", "--state-dir", "/nope"], 1, "/nope"),
    "policy show": (["policy", "--socket", "/nope.sock", "show", "x/a"], 1, "/nope.sock"),
    "policy explain": (["policy", "--socket", "/nope.sock", "explain", "x/a", "y/b", "80/tcp"], 1, "/nope.sock"),
    "relay": (["relay", "--kubeconfig", "/nope/kubeconfig"], 1, "/nope/kubeconfig"),
    "trace": (["trace", "10.0.0.1", "10.0.0.2", "--etcd", ETCD], 1, "127.0.0.1:9"),
    "version": (["version"], 0, "podnet"),
}
EXTRA = {"trace --kubeconfig": (["trace", "x/a", "y/b", "--kubeconfig", "/nope/kubeconfig"], 1, "/nope/kubeconfig"),
         "node ls --lab": (["node", "ls", "--lab", "nope"], 1, "nope"),
         "lab up --pods-per-node": (["lab", "up", "--pods-per-node", "-1"], 2, "--pods-per-node")}


def commands(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [c for name, child in action.choices.items() for c in commands(child, (*prefix, name))]
    return [" ".join(prefix)]


def test_every_command_has_a_case() -> None:
    assert sorted(commands(parser())) == sorted(CASES)


@pytest.mark.parametrize("name", [*CASES, *EXTRA])
def test_a_missing_dependency_is_one_line_naming_it(name: str) -> None:
    argv, status, named = {**CASES, **EXTRA}[name]
    p = subprocess.run([sys.executable, "-m", "podnet.cli", *argv], capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == status, (p.returncode, out)
    assert "Traceback" not in out and 'File "' not in out, out
    if name == "doctor":              # a report of every check, one line each; exit 1 names the broken one
        assert any(named in line and "FAIL" in line.upper() for line in out.splitlines()), out
    elif status:
        said = p.stderr.strip().splitlines() or p.stdout.strip().splitlines()
        assert named in said[-1], f"the last line does not name {named!r}: {said[-1]!r}"
        if status == 1:
            assert len(p.stderr.strip().splitlines()) == 1, f"more than one line: {p.stderr!r}"
