"""Shared by the runtime tests: a busybox image built from busybox-static (no registry here),
and a holder process whose network and mount namespaces a runtime runs in."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def holder(sandbox: str, tmp_path: Path) -> Iterator[int]:
    keep = tmp_path / "cgroup"
    keep.mkdir()
    ready = tmp_path / "holder-ready"
    script = (f"mount --rbind /sys/fs/cgroup {keep} && mount -t sysfs sysfs /sys && "
              f"mount --rbind {keep} /sys/fs/cgroup && touch {ready} && exec sleep 3600")
    p = subprocess.Popen(["nsenter", f"--net=/run/netns/{sandbox}", "unshare", "--mount", "--propagation", "slave",
                          "sh", "-c", script])
    deadline = time.monotonic() + 10
    while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.poll() is None and ready.exists(), "holder process died"
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


