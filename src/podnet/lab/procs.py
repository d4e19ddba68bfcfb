"""Ending the lab's processes and knowing they have ended.

A SIGKILL is a request: the process is gone only once the kernel has torn it down and its parent
(often not us: the agent's BIRD and wireguard-go, containerd's shims, reparented to PID 1) has
reaped it.  A lab that returns before then leaves a script that checks for leftovers, or starts
the next lab at once, looking at processes that are still there.  So every kill here waits until
/proc has no trace of the process (our own zombies are reaped here).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable

GONE_WITHIN = 15.0        # seconds a SIGKILLed process may take to disappear (a busy machine)


def _state(pid: int) -> str:
    """The process's state letter ('' when it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def wait_gone(pids: Iterable[int], timeout: float = GONE_WITHIN) -> list[int]:
    """Until none of `pids` exists (our own zombies reaped); returns those still there at the timeout."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left:
        for pid in list(left):
            if _state(pid) == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)       # ours: reap it; another's: its parent will
            if not _state(pid):
                left.discard(pid)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return sorted(left)


def kill_and_wait(pids: Iterable[int], timeout: float = GONE_WITHIN) -> list[int]:
    """SIGKILL each process, then wait until all are gone; returns any still there."""
    pids = [p for p in pids if p > 0 and p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return wait_gone(pids, timeout)


def in_group(pgid: int) -> list[int]:
    """Every process of a process group (a daemon started in a session of its own, and its children
    that did not leave it)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and int(fields[2]) == pgid:
                out.append(int(entry))
    return out


def kill_group(pgid: int) -> list[int]:
    """SIGKILL a process group and wait until each of its processes is gone."""
    return kill_and_wait([pgid, *in_group(pgid)])


def in_netns(name: str) -> list[int]:
    """The processes in a named network namespace."""
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def in_mount_ns(of_pid: int) -> list[int]:
    """The other processes sharing `of_pid`'s mount namespace ([] when it is gone)."""
    try:
        mine = os.readlink(f"/proc/{of_pid}/ns/mnt")
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != of_pid:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == mine:
                    out.append(int(entry))
    return out


def stop_popen(proc: subprocess.Popen[bytes]) -> None:
    """A child of ours and its whole session (`ip netns exec` execs in place; a daemon's own children
    stay in its group) killed, waited for, reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    kill_and_wait(in_group(proc.pid))
