"""A CNI request read from the environment and stdin, validated as the spec asks."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import version as V
from .errors import DECODE_FAILURE, INVALID_CONFIG, INVALID_ENV, UNKNOWN_CONTAINER, CNIError

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "VERSION", "GC")

# command -> env variables that must be present (the spec's table; CNI_PATH is optional)
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "STATUS": (),
    "GC": (),
    "VERSION": (),
}

_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_NAME_RE = _ID_RE
MAX_NAME = 255      # a file name's limit: host-local and tuning keep a directory per network


@dataclass(frozen=True)
class Request:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]
    path: tuple[str, ...]
    config: dict[str, Any]
    stdin: bytes
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def cni_version(self) -> str:
        return str(self.config.get("cniVersion") or "0.1.0")

    @property
    def network(self) -> str:
        return str(self.config["name"])

    @property
    def runtime_config(self) -> dict[str, Any]:
        rc = self.config.get("runtimeConfig")
        return rc if isinstance(rc, dict) else {}

    @property
    def prev_result(self) -> dict[str, Any] | None:
        pr = self.config.get("prevResult")
        return pr if isinstance(pr, dict) and pr else None


def parse_cni_args(raw: str) -> dict[str, str]:
    """'IgnoreUnknown=1;K8S_POD_NAME=x' -> dict; a pair without '=' is a code-4 error."""
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, val = pair.partition("=")
        if not sep:
            raise CNIError(INVALID_ENV, f"CNI_ARGS: invalid pair {pair!r}")
        out[key] = val
    return out


def bad_link_name(name: str) -> str:
    """Why the kernel would refuse or rewrite `name` as an interface name ('' if it takes it as is):
    at most 15 bytes, not . or .., no /, : or whitespace — and no %, which the kernel expands
    (eth%d becomes eth0), so the name asked for would not be the name made."""
    if not name:
        return "empty"
    if len(name.encode("utf-8", "surrogateescape")) > 15:
        return "longer than 15 bytes"
    if name in (".", ".."):
        return "not a name"
    if any(c in name for c in "/:%") or any(c.isspace() or not c.isprintable() for c in name):
        return "contains /, :, %, whitespace or a control character"
    return ""


def check_ifname(ifname: str) -> None:
    why = bad_link_name(ifname)
    if why:
        raise CNIError(INVALID_ENV, f"CNI_IFNAME: invalid interface name {ifname!r} ({why})")


def decode_config(stdin: bytes) -> dict[str, Any]:
    try:
        conf = json.loads(stdin or b"")
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(DECODE_FAILURE, "decoding network config failed", str(e)) from None
    except RecursionError:            # ~1000 levels of nesting: no config is that deep
        raise CNIError(DECODE_FAILURE, "decoding network config failed", "nested too deeply") from None
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "network config is not a JSON object")
    return conf


def from_env(env: Mapping[str, str], stdin: bytes) -> Request:
    """Validate env and config for a non-VERSION command (the command is known)."""
    command = env["CNI_COMMAND"]
    missing = [k for k in REQUIRED_ENV[command] if k not in env or (k != "CNI_CONTAINERID" and not env[k])]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    cid = env.get("CNI_CONTAINERID", "")
    if command in ("ADD", "DEL", "CHECK"):
        if not cid:
            raise CNIError(UNKNOWN_CONTAINER, "missing containerID")
        if not _ID_RE.match(cid):
            raise CNIError(INVALID_ENV, f"CNI_CONTAINERID: invalid characters in {cid!r}")
        check_ifname(env["CNI_IFNAME"])
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    conf = decode_config(stdin)
    ver = conf.get("cniVersion") or "0.1.0"
    V.require_supported(ver)
    V.require_command_allowed(command, ver)
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(INVALID_CONFIG, "invalid config: name: missing network name")
    if not _NAME_RE.match(name):
        raise CNIError(INVALID_CONFIG, f"invalid config: name: {name!r} has illegal characters")
    if len(name) > MAX_NAME:
        raise CNIError(INVALID_CONFIG, f"invalid config: name: longer than {MAX_NAME} characters "
                                       "(the network's name is a directory name in plugins' data dirs)")
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    return Request(command=command, container_id=cid, netns=env.get("CNI_NETNS", ""),
                   ifname=env.get("CNI_IFNAME", ""), args=args, path=path, config=conf,
                   stdin=stdin, env=dict(env))
