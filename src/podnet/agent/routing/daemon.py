"""A daemon the agent runs beside itself and talks to through a unix socket — wireguard-go
(wgdevice.py), BIRD (bgp.py) — kept alive without tying it to the agent's own life.

It runs in a session of its own, so an agent that stops, restarts or dies leaves it running
(pod traffic keeps its tunnel, BGP sessions do not flap); a restarted agent finds it answering
on its socket and adopts it.  The agent follows the process that serves the socket — started by
it or adopted: SO_PEERCRED gives its pid, a pidfd says when it exits — and calls back at once,
so the reconcile loop starts and configures a new one without waiting for its next pass.
"""
from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

from ...net.errors import NetError
from ...net.peer import serving_pid

log = logging.getLogger(__name__)


class DaemonError(NetError):
    """The daemon could not be started, or (run by someone else) does not answer yet."""


class SocketDaemon:
    def __init__(self, what: str, socket_path: str, alive: Callable[[], bool], log_path: str = "",
                 start_timeout: float = 10.0, external: bool = False, env: dict[str, str] | None = None) -> None:
        """alive(): whether the daemon answers on socket_path; external: somebody else starts it
        (the agent only waits for it)."""
        self.what, self.socket_path, self.alive = what, socket_path, alive
        self.log_path, self.start_timeout, self.external = log_path, start_timeout, external
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0              # processes this agent started (tests, metrics)
        self._followed = 0

    def ensure(self, argv: Callable[[], list[str]], on_exit: Callable[[], None] | None = None) -> bool:
        """Make sure the daemon runs and answers; True when it was started just now (so the
        caller configures it from scratch).  argv(): its command line, asked only to start it."""
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None
        if self.alive():
            started = False
        elif self.external:
            raise DaemonError(f"waiting for {self.what} to answer on {self.socket_path} (run by another container)")
        else:
            self._start(argv())
            started = True
        pid = self.pid()
        if on_exit is not None and pid and pid != self._followed:
            self._followed = pid
            self._follow(pid, on_exit)
        return started

    def _start(self, argv: list[str]) -> None:
        if os.path.exists(self.socket_path):     # a dead process's socket: the new one could not listen there
            os.unlink(self.socket_path)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, **self.env})
        finally:
            if out is not subprocess.DEVNULL:
                out.close()      # type: ignore[union-attr]
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while not self.alive():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DaemonError(f"{self.what} did not start (status {self.proc.poll()}; log: {self.log_path or '-'})")
            time.sleep(0.02)
        log.info("%s started (pid %d)", self.what, self.proc.pid)

    def pid(self) -> int:
        """The process serving the socket (started by this agent or adopted), 0 if none."""
        return serving_pid(self.socket_path)

    def _follow(self, pid: int, on_exit: Callable[[], None]) -> None:
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
            log.warning("%s (pid %d) exited", self.what, pid)
            on_exit()
        threading.Thread(target=wait, name=f"podnet-follow-{self.what}", daemon=True).start()
