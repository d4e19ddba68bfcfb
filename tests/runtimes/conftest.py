"""Shared by the runtime tests: a busybox image built from busybox-static (no registry here),
and a holder process whose network and mount namespaces a runtime runs in."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

IMAGE = "localhost/podnet-busybox:latest"


def ensure_image(image: str = IMAGE, cmd: str = '["/bin/sh"]') -> None:
    """Build `image` (busybox-static, every applet) with podman unless it exists."""
    if subprocess.run(["podman", "image", "exists", image]).returncode == 0:
        return
    root = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True).stdout.strip())
    try:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            (root / d).mkdir()
        shutil.copy("/bin/busybox", root / "bin" / "busybox")
        for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
            if applet != "busybox":
                os.symlink("busybox", root / "bin" / applet)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        tar = subprocess.Popen(["tar", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "--change", f"CMD={cmd}", "-", image], stdin=tar.stdout,
                       check=True, capture_output=True)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def holder(sandbox: str, tmp_path: Path) -> Iterator[int]:
    keep = tmp_path / "cgroup"
    keep.mkdir()
    script = (f"mount --rbind /sys/fs/cgroup {keep} && mount -t sysfs sysfs /sys && "
              f"mount --rbind {keep} /sys/fs/cgroup && exec sleep 3600")
    p = subprocess.Popen(["nsenter", f"--net=/run/netns/{sandbox}", "unshare", "--mount", "--propagation", "slave",
                          "sh", "-c", script])
    time.sleep(0.5)
    assert p.poll() is None, "holder process died"
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


