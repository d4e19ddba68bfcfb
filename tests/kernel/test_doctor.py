"""`podnet doctor` reports what a person would check by hand: the agent, its socket, the launchers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from podnet.wire import http_get_unix


def doctor(sandbox: str, sock: str, bin_dir: str) -> tuple[int, list[dict[str, str]]]:
    out = subprocess.run(["ip", "netns", "exec", sandbox, sys.executable, "-m", "podnet.cli", "doctor",
                          "--json", "--socket", sock, "--bin-dir", bin_dir], capture_output=True, text=True)
    return out.returncode, json.loads(out.stdout)


def by_check(findings: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {f["check"]: f for f in findings}


def wait_ready(sock: str, timeout: float = 30) -> None:
    """The agent answers /readyz 200 (what a person waits for before asking doctor)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get_unix(sock, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the agent never became ready"
        time.sleep(0.1)


def test_agent_running_is_reported_ok(sandbox: str, bin_dir: str, agent_factory) -> None:  # type: ignore[no-untyped-def]
    agent = agent_factory(sandbox)
    wait_ready(agent.sock)
    rc, findings = doctor(sandbox, agent.sock, bin_dir)
    f = by_check(findings)
    assert rc == 0, [x for x in findings if x["level"] != "ok"]
    assert f["agent"]["level"] == "ok" and f["agent socket"]["level"] == "ok"
    assert "0600" in f["agent socket"]["detail"]
    assert f["launcher interpreter"]["level"] == "ok"
    assert f["launcher interpreter"]["detail"].startswith("/usr/bin/python3")


def test_loose_socket_permissions_and_stale_socket_fail(sandbox: str, bin_dir: str, agent_factory,
                                                        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = agent_factory(sandbox)
    os.chmod(agent.sock, 0o666)
    rc, findings = doctor(sandbox, agent.sock, bin_dir)
    assert rc == 1 and by_check(findings)["agent socket"]["level"] == "fail"
    os.chmod(agent.sock, 0o600)
    agent.proc.kill()
    agent.proc.wait()
    rc, findings = doctor(sandbox, agent.sock, bin_dir)  # socket file left behind by kill -9
    assert rc == 1 and by_check(findings)["agent"]["level"] == "fail"


def test_missing_launchers_fail_and_name_the_fix(sandbox: str, tmp_path: Path) -> None:
    rc, findings = doctor(sandbox, str(tmp_path / "none.sock"), str(tmp_path / "empty-bin"))
    f = by_check(findings)
    assert rc == 1
    assert f["agent socket"]["level"] == "warn"
    assert f["launchers"]["level"] == "fail" and "podnet install" in f["launchers"]["detail"]
