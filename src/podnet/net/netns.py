"""Open network namespaces by path and enter them per thread, with a guaranteed restore.

Never creates a namespace: a missing path is `NetnsGone`.  setns(2) changes only the
calling thread, so the agent's threads can work in different pods at once.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator

from .errors import NetError, NetnsGone, NotANetns

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_NSFS_DEV = os.stat("/proc/self/ns/net").st_dev


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetError(f"setns: {os.strerror(err)}")


def open_netns(path: str) -> int:
    """An O_RDONLY fd of the netns at `path`, after checking it is an nsfs file."""
    if not path:
        raise NetnsGone("no netns path")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsGone(path) from None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise NetnsGone(path) from None
        raise NetError(f"open {path}: {e.strerror}") from None
    if os.fstat(fd).st_dev != _NSFS_DEV:
        os.close(fd)
        raise NotANetns(f"{path} is not a network namespace")
    return fd


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    fd = open_netns(path)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the block with this thread inside the netns `fd`; always come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)



def move_this_thread(path: str) -> None:
    """Put the calling thread into the netns at `path` for the rest of its life (a worker thread
    whose every socket must live there, e.g. a client of a server on a lab fabric)."""
    fd = open_netns(path)
    try:
        _setns(fd)
    finally:
        os.close(fd)
