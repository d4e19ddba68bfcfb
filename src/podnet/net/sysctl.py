"""Read and write /proc/sys values; net/ keys resolve in the calling thread's netns."""
from __future__ import annotations

import os

from .errors import NetError


def _path(key: str) -> str:
    rel = key.replace(".", "/") if "/" not in key else key
    path = os.path.normpath(os.path.join("/proc/sys", rel))
    if not path.startswith("/proc/sys/"):
        raise NetError(f"sysctl key {key!r} escapes /proc/sys")
    return path


def read(key: str) -> str:
    with open(_path(key)) as f:
        return f.read().strip()


def write(key: str, value: str | int) -> None:
    try:
        with open(_path(key), "w") as f:
            f.write(str(value))
    except OSError as e:
        raise NetError(f"sysctl {key}={value}: {e.strerror}") from None


def ensure(key: str, value: str | int) -> None:
    """Write only when different (a write costs more than a read)."""
    try:
        if read(key) == str(value):
            return
    except OSError:
        pass
    write(key, value)
