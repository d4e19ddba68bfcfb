"""Config-reading helpers shared by plugins: typed getters that name the field on error."""
from __future__ import annotations

import re
from typing import Any

from ..cni.convert import parse_result
from ..cni.errors import config_error
from ..cni.request import Request, bad_link_name
from ..cni.types import Result

_MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def get_bool(conf: dict[str, Any], key: str, default: bool = False, prefix: str = "") -> bool:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise config_error(prefix + key, f"must be true or false, not {v!r}")
    return v


def get_int(conf: dict[str, Any], key: str, default: int = 0, lo: int = 0, hi: int = 2**31 - 1,
            prefix: str = "") -> int:
    v = conf.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise config_error(prefix + key, f"must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise config_error(prefix + key, f"{v} is out of range {lo}..{hi}")
    return v


def get_str(conf: dict[str, Any], key: str, default: str = "", prefix: str = "") -> str:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise config_error(prefix + key, f"must be a string, not {v!r}")
    return v


def get_path(conf: dict[str, Any], key: str, default: str = "", prefix: str = "") -> str:
    """A file or directory path from the config: absolute, and nothing a path cannot hold (NUL);
    '' or absent gives the default."""
    v = get_str(conf, key, default, prefix) or default
    if v and (not v.startswith("/") or "\0" in v or len(v) > 4000):
        raise config_error(prefix + key, f"must be an absolute path, not {v!r}")
    return v


def check_link_name(name: str, field: str) -> str:
    why = bad_link_name(name)
    if why:
        raise config_error(field, f"invalid interface name {name!r} ({why})")
    return name


def check_mac(mac: str, field: str) -> str:
    if not _MAC_RE.match(mac):
        raise config_error(field, f"invalid MAC address {mac!r}")
    return mac.lower()


def requested_mac(req: Request) -> str:
    """runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC (the reference's order)."""
    rc_mac = req.runtime_config.get("mac")
    if rc_mac:
        return check_mac(str(rc_mac), "runtimeConfig.mac")
    args = req.config.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict) and args["cni"].get("mac"):
        return check_mac(str(args["cni"]["mac"]), "args.cni.mac")
    if req.args.get("MAC"):
        return check_mac(req.args["MAC"], "CNI_ARGS MAC")
    return ""


def prev_result(req: Request) -> Result | None:
    pr = req.prev_result
    return parse_result(pr, req.cni_version) if pr else None


def require_prev_result(req: Request, plugin: str) -> Result:
    pr = prev_result(req)
    if pr is None:
        raise config_error("prevResult", f"{plugin} must be called as a chained plugin")
    return pr


def ipam_conf(conf: dict[str, Any]) -> dict[str, Any] | None:
    """The ipam object, or None for 'no IPAM' (absent or empty: L2 only)."""
    ipam = conf.get("ipam")
    if ipam is None or ipam == {}:
        return None
    if not isinstance(ipam, dict):
        raise config_error("ipam", "must be an object")
    if not isinstance(ipam.get("type"), str) or not ipam["type"]:
        raise config_error("ipam.type", "missing IPAM type")
    return ipam


def valid_attachments(req: Request) -> set[tuple[str, str]]:
    """GC's cni.dev/valid-attachments (or the older cni.dev/attachments)."""
    raw = req.config.get("cni.dev/valid-attachments", req.config.get("cni.dev/attachments"))
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise config_error("cni.dev/valid-attachments", "must be a list")
    out = set()
    for a in raw:
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str):
            raise config_error("cni.dev/valid-attachments", f"invalid attachment {a!r}")
        out.add((a["containerID"], str(a.get("ifname") or "")))
    return out
