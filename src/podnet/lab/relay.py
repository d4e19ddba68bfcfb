"""The lab's podnet relay: `podnet relay` in the fabric namespace (beside the API server, as a
Deployment's pod would be on a node of the fabric), serving https with a certificate of the lab's
CA, reviewing the agents' tokens with the admin's credentials (a real relay's ServiceAccount is
bound to system:auth-delegator)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from .control_plane import https_get

PORT = 5473


def start(work: str, fab: str, cp: object, addr: str, log_path: str,
          keep_annotations: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """The relay process (it lists everything before it says ready: wait_ready)."""
    pki = cp.pki                                          # type: ignore[attr-defined]
    pair = pki.issue("relay", "podnet-relay", server=True, ips=(addr,))
    args = [sys.executable, "-m", "podnet.cli", "relay", "--kubeconfig", cp.admin_kubeconfig(),  # type: ignore[attr-defined]
            "--listen", f"{addr}:{PORT}", "--tls-cert", pair.cert, "--tls-key", pair.key]
    for prefix in keep_annotations:
        args += ["--keep-annotations", prefix]
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(["ip", "netns", "exec", fab, *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    finally:
        log.close()


def start_in(c: Any, keep_annotations: tuple[str, ...] = ()) -> None:
    """The relay of lab `c` (again, after stop_in), beside its API server; returns once it has
    listed every kind."""
    from .cluster import ETCD_ADDR
    log_path = os.path.join(c.work, "relay.log")
    c.procs["relay"] = p = start(c.work, c.fab, c.cp, ETCD_ADDR, log_path, keep_annotations)
    c.timings["relay_ready"] = wait_ready(p, c.fab, ETCD_ADDR, c.cp.pki.ca.cert, log_path)


def stop_in(c: Any) -> None:
    """Lab `c`'s relay killed and gone (the agents keep what they programmed)."""
    from .procs import stop_popen
    p = c.procs.pop("relay", None)
    if p is not None:
        stop_popen(p)


def url(addr: str) -> str:
    return f"https://{addr}:{PORT}"


def ready(fab: str, addr: str, ca: str) -> bool:
    """The relay's /readyz (every kind listed), asked from the fabric."""
    try:
        return https_get(fab, f"{url(addr)}/readyz", ca)[0] == 200
    except OSError:
        return False


def wait_ready(proc: subprocess.Popen[bytes], fab: str, addr: str, ca: str, log_path: str,
               timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while not ready(fab, addr, ca):
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            tail = ""
            if os.path.exists(log_path):
                with open(log_path) as f:
                    tail = "\n".join(f.read().splitlines()[-8:])
            raise RuntimeError(f"the relay did not get ready (exit {proc.poll()}); its log ends:\n{tail}")
        time.sleep(0.1)
    return time.monotonic() - t0
