"""The node's WireGuard device, `podnet.wg`: which implementation runs it, and keeping it alive.

The kernel's WireGuard is used when `ip link add type wireguard` works.  Otherwise (this kind
of machine: modules off, no WireGuard built in) `wireguard-go` runs it from a TUN device, as a
process of its own — started in its own session, never stopped by the agent — so an agent that
restarts or dies leaves pod traffic flowing (Cilium dropped its in-agent userspace WireGuard for
exactly that).  A restarted agent adopts the running device through its UAPI socket.  If
wireguard-go dies, its TUN device goes and podnet's routes through it with it (IPv4 silently:
the kernel reports no route deletion for a vanished device), so the agent follows the process
itself — a pidfd of the socket's peer (SO_PEERCRED: also for a process it adopted) — and the
reconcile loop runs at once, starts a new wireguard-go and configures it from scratch.

wireguard-go's UAPI socket is always `/var/run/wireguard/<device>.sock` (it also watches that
path, and exits when it is removed).  Several lab nodes share one filesystem, so with
`run_dir` set the process runs in a private mount namespace with `run_dir` bound over
/run/wireguard: each node's socket is `<run_dir>/podnet.wg.sock`, and on a real node (run_dir
unset) `wg show podnet.wg` works as usual.

On Kubernetes the DaemonSet runs wireguard-go in a container of its own beside the agent's
(`external`): a container restart kills every process in it, so an agent upgrade would otherwise
take the tunnel down.  The agent then only waits for the socket (not ready until it answers).
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

from ...net.errors import NetError
from ...net.wguapi import Uapi

log = logging.getLogger(__name__)

WG_DEV = "podnet.wg"
STANDARD_RUN_DIR = "/var/run/wireguard"


class DeviceError(NetError):
    """The WireGuard device cannot be made (no kernel WireGuard and no working wireguard-go)."""


class UserspaceDevice:
    """podnet.wg run by wireguard-go; configured over UAPI."""
    kind = "wireguard-go"

    def __init__(self, run_dir: str = "", log_path: str = "", start_timeout: float = 10.0, external: bool = False) -> None:
        self.external = external
        self.run_dir = run_dir or STANDARD_RUN_DIR
        self.private_mount = bool(run_dir) and os.path.realpath(run_dir) != os.path.realpath(STANDARD_RUN_DIR)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.uapi = Uapi(os.path.join(self.run_dir, f"{WG_DEV}.sock"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0          # wireguard-go processes this agent started (tests, metrics)
        self._followed = 0

    def ensure(self, on_exit: Callable[[], None] | None = None) -> bool:
        """Make sure wireguard-go runs and answers; True when it was (re)started just now (its
        configuration is empty: the caller configures everything).  on_exit: called when the
        process serving the device — started now, or found running — exits."""
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None
        if self.uapi.alive():
            started = False
        elif self.external:
            raise DeviceError(f"waiting for wireguard-go to answer on {self.uapi.path} (run by another container: "
                              "--wireguard-go external)")
        else:
            self._start()
            started = True
        pid = self.pid()
        if on_exit is not None and pid and pid != self._followed:
            self._followed = pid
            self.follow(pid, on_exit)
        return started

    def _start(self) -> None:
        exe = shutil.which("wireguard-go")
        if exe is None:
            raise DeviceError("encryption wireguard: this kernel has no WireGuard and wireguard-go is not installed "
                              "(Debian: apt install wireguard-go)")
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        with_socket = self.uapi.path
        if os.path.exists(with_socket):     # a dead process's socket: wireguard-go would not listen over it
            os.unlink(with_socket)
        if self.private_mount:
            os.makedirs("/run/wireguard", mode=0o700, exist_ok=True)
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$0" /run/wireguard && exec "$1" -f "$2"', self.run_dir, exe, WG_DEV]
        else:
            argv = [exe, "-f", WG_DEV]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, "LOG_LEVEL": "error"})
        finally:
            if out is not subprocess.DEVNULL:
                out.close()      # type: ignore[union-attr]
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while not self.uapi.alive():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DeviceError(f"wireguard-go did not start (status {self.proc.poll()}; log: {self.log_path or '-'})")
            time.sleep(0.02)
        log.info("wireguard-go started (pid %d), device %s", self.proc.pid, WG_DEV)

    def pid(self) -> int:
        """The process serving the socket (started by this agent or adopted), 0 if none."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(self.uapi.path)
                creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", creds)[0])
        except OSError:
            return 0

    def follow(self, pid: int, on_exit: Callable[[], None]) -> None:
        """on_exit() once process `pid` is gone (a thread on its pidfd; reaps it if it is ours)."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            on_exit()
            return

        def wait() -> None:
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
            if self.proc is not None and self.proc.pid == pid:
                self.proc.wait()
            log.warning("wireguard-go (pid %d) exited", pid)
            on_exit()
        threading.Thread(target=wait, name="podnet-wireguard-go", daemon=True).start()
