"""`podnet demo` ended by a signal tears its lab down like a normal exit: no namespace, no agent,
no etcd, no work directory left — whether the signal comes while the lab is being built or while
pods are being probed."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest


def namespaces() -> set[str]:
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()) - {"(id:"}


def lab_processes(tag: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"pnlab-{tag}" in cmd:
                out.append(cmd)
    return out


@pytest.mark.parametrize("sig, when", [(signal.SIGTERM, "building"), (signal.SIGINT, "running"),
                                       (signal.SIGHUP, "running")])
def test_a_signal_tears_the_demo_down(sig: int, when: str) -> None:
    before = namespaces()
    p = subprocess.Popen([sys.executable, "-m", "podnet.cli", "demo", "--nodes", "2", "--pods-per-node", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        if when == "building":       # the lab's namespaces exist, its agents are starting
            while not any(n.startswith("pnlab-") for n in namespaces() - before):
                assert time.monotonic() < deadline and p.poll() is None, "the demo made no namespace"
                time.sleep(0.02)
        else:                        # agents ready, pods being made and probed
            assert p.stdout is not None
            line = p.stdout.readline()
            assert "podnet demo:" in line, line
        tag = next(n for n in namespaces() - before if n.startswith("pnlab-")).split("-")[1]
        p.send_signal(sig)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + sig, (rc, p.stderr.read() if p.stderr else "")
    left = [n for n in namespaces() if n.startswith(f"pnlab-{tag}")]
    assert left == [], f"namespaces left behind: {left}"
    assert lab_processes(tag) == [], "agents or etcd left running"
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"pnlab-{tag}*")) == [], "work directory left"
