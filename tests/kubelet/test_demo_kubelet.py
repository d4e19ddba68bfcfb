"""`podnet demo --kubelet --nodes 2`, as a user runs it: PASS, and nothing of it left on the machine
(namespaces, cgroups, containers, the lab's directories, mounts)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.kubernetes import have_kubernetes
from tests.helpers.lab import lab_processes

missing = have_kubernetes() or ", ".join(t for t in ("containerd", "ctr", "runc", "mmdebstrap", "go")
                                         if not shutil.which(t))
pytestmark = [pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}"),
              pytest.mark.timeout(600)]


def lab_traces() -> dict[str, set[str]]:
    """Everything a lab can leave on the machine, by kind."""
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    cgroups = {str(p) for p in Path("/sys/fs/cgroup").glob("*/pnlab-*")}
    dirs = {str(p) for p in Path(tempfile.gettempdir()).glob("pnlab-*")}
    mounts = {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines() if "pnlab-" in line}
    procs = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "pnlab-" in cmd or "pnprobe" in cmd:
                procs.add(cmd)
    return {"netns": {n for n in netns if n.startswith("pnlab-")}, "cgroups": cgroups, "dirs": dirs,
            "mounts": mounts, "procs": procs,
            # kubelet, containerd, its shims, kube-proxy, the control plane, etcd, agents: gone the
            # moment the demo returns (issue 37), not a moment later
            "daemons": {f"{pid} {kind}" for pid, kind in lab_processes().items()}}


def test_demo_kubelet_passes_and_leaves_nothing() -> None:
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--nodes", "2"], capture_output=True,
                       text=True, timeout=540)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    assert re.search(r"pod → pod by Pod IP: (\d+)/\1 ", p.stdout), p.stdout
    assert "every node Ready in" in p.stdout and "hostPort 18080 on n1" in p.stdout
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left
