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


def disable_ipv6(ifname: str) -> None:
    """IPv6 off on one link of the calling thread's netns (nothing to do on a kernel without IPv6).

    Why podnet does it for the host-side links it makes that carry no IPv6 (an IPv4-only pod's
    host veth, every pod's ifb): each IPv6-enabled link adds fe80::/64 and ff00::/8 routes to the
    host's IPv6 table, and the kernel walks that table, or that prefix's list of links, on every
    link going up or down and on every link-local's DAD — under the lock every netlink request
    waits for.  Over a thousand pods that made a pod's ADD requests 2–9× slower (bench/RESULTS.md)."""
    if os.path.isdir("/proc/sys/net/ipv6/conf"):
        write(f"net/ipv6/conf/{ifname}/disable_ipv6", 1)
