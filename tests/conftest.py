"""Shared fixtures: tiers are skipped (with the reason) when the machine cannot run them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cni import netns_add, netns_del, unique

ROOT = Path(__file__).resolve().parent.parent
GO_PLUGINS = "/usr/lib/cni"
ROOT_TIERS = ("kernel", "runtimes", "cluster", "kubelet", "neutron", "reliability")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", default="150", help="fuzz cases per plugin type (tests/reliability)")
    parser.addoption("--fuzz-seed", default="20261130", help="the fuzzer's seed (same seed, same cases)")


def _is_root() -> bool:
    return os.geteuid() == 0


TIER_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Seconds spent per tier (setup, call and teardown of its tests: module fixtures included)."""
    parts = report.nodeid.split("/")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
    TIER_SECONDS[tier] = TIER_SECONDS.get(tier, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What each tier cost this run (the README's table of tier times comes from these lines)."""
    if TIER_SECONDS:
        total = sum(TIER_SECONDS.values())
        parts = ", ".join(f"{t} {s / 60:.1f} min" for t, s in sorted(TIER_SECONDS.items(), key=lambda x: -x[1]))
        terminalreporter.write_line(f"tier times: {parts}; total {total / 60:.1f} min")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if any(f"/{tier}/" in path for tier in ROOT_TIERS) and not _is_root():
            item.add_marker(pytest.mark.skip(reason="kernel tier needs root"))


@pytest.fixture(scope="session")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The launchers, installed exactly as `podnet install` writes them."""
    d = tmp_path_factory.mktemp("cnibin")
    subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--bin-dir", str(d)], check=True,
                   capture_output=True)
    return str(d)


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A fresh netns standing in for the host; removed on the way out, pass or fail."""
    name = unique("pnt-h-")
    netns_add(name)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        netns_del(name)


@pytest.fixture
def make_pod() -> Iterator:  # type: ignore[type-arg]
    made: list[str] = []

    def make() -> str:
        name = unique("pnt-p-")
        made.append(name)
        return netns_add(name)

    try:
        yield make
    finally:
        for n in made:
            netns_del(n)


class Agent:
    def __init__(self, sandbox: str, sock: str, log: str, extra: list[str] | None = None) -> None:
        self.sock = sock
        self.log = log
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", sandbox, sys.executable, "-m", "podnet.cli", "agent", "--socket", sock,
             "--log-file", log, *(extra or [])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start: {Path(log).read_text() if os.path.exists(log) else ''}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(params=["in-process", "agent"])
def mode(request: pytest.FixtureRequest, sandbox: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Run each kernel test both ways: launcher in-process, and through an agent."""
    if request.param == "in-process":
        yield {"agentSocket": str(tmp_path / "no-agent.sock")}
        return
    agent = Agent(sandbox, str(tmp_path / "agent.sock"), str(tmp_path / "agent.log"))
    try:
        yield {"agentSocket": agent.sock}
    finally:
        agent.stop()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    agents: list[Agent] = []

    def start(sandbox: str, name: str = "agent") -> Agent:
        a = Agent(sandbox, str(tmp_path / f"{name}.sock"), str(tmp_path / f"{name}.log"))
        agents.append(a)
        return a

    try:
        yield start
    finally:
        for a in agents:
            a.stop()


def have_go_plugins() -> bool:
    return os.path.isfile(f"{GO_PLUGINS}/bridge") and os.path.isfile(f"{GO_PLUGINS}/host-local")


def have_nft() -> bool:
    return shutil.which("nft") is not None
