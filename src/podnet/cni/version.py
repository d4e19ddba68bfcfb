"""Supported CNI versions and which command needs which config version."""
from __future__ import annotations

import re

from .errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError

SUPPORTED: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

# command -> the lowest config version that may use it
MIN_VERSION_FOR = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def parse(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0); a malformed string is a decode failure (code 6)."""
    m = _SEMVER.match(version) if isinstance(version, str) else None
    if not m:
        raise CNIError(DECODE_FAILURE, f"invalid cniVersion {version!r}")
    return int(m[1]), int(m[2]), int(m[3])


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def require_supported(version: str) -> None:
    parse(version)
    if version not in SUPPORTED:
        raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED)}")


def require_command_allowed(command: str, version: str) -> None:
    minimum = MIN_VERSION_FOR.get(command)
    if minimum and not at_least(version, minimum):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"config is {version!r}, {command} needs {minimum} or later")


def has_version_field(version: str) -> bool:
    """0.3.x and 0.4.0 results carry ips[].version."""
    return parse(version)[0] == 0 and parse(version) >= (0, 3, 0)


def is_legacy(version: str) -> bool:
    """0.1.0/0.2.0 results use the ip4/ip6 shape."""
    return parse(version) < (0, 3, 0)
