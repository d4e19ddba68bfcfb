"""A busybox image for the runtime tests, built from Debian's busybox-static with podman (no
registry here)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
