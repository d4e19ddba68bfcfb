"""CNI errors and the spec's error codes (SPEC §5, plus libcni's 8 and 999).

Imported by the launcher: keep it free of `typing` and other costly modules.
"""
from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
DEGRADED = 51
INTERNAL = 999


class CNIError(Exception):
    """An error that is reported to the runtime as the CNI error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"


def config_error(field: str, problem: str) -> CNIError:
    """A code-7 error whose message names the offending field."""
    return CNIError(INVALID_CONFIG, f"invalid config: {field}: {problem}")
