"""Supported CNI versions and which command needs which config version."""
from __future__ import annotations

from ..wire import LATEST_VERSION, SUPPORTED_VERSIONS
from .errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError

SUPPORTED: tuple[str, ...] = SUPPORTED_VERSIONS
LATEST: str = LATEST_VERSION

# command -> the lowest config version that may use it
MIN_VERSION_FOR = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def parse(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0); a malformed string is a decode failure (code 6)."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise CNIError(DECODE_FAILURE, f"invalid cniVersion {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


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
