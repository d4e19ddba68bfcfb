"""podnet-tuning: sysctls and link settings of the pod's interface (the reference `tuning`).

Chained after the plugin that made IFNAME.  `sysctl` keys must be under net/ (dotted
or slashed; `IFNAME` is replaced by the interface; no `..`), and when an allowlist
file exists each must match one of its regexes.  `mac`, `mtu`, `promisc`,
`allmulti`, `txQLen` change the link.  The original values are saved to
<dataDir>/<network>/<containerID>_<ifname>.json and put back by DEL.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Interface, Result
from ..net import netns, sysctl
from ..net.errors import NetError, NetnsGone
from ..net.rtnl import Link, Rtnl, open_rtnl
from .common import check_mac, get_path, requested_mac, require_prev_result, valid_attachments
from .errors import CheckFailed

DEFAULT_DATA_DIR = "/run/cni/tuning"
ALLOWLIST = "/etc/cni/tuning/allowlist.conf"
IFF_PROMISC, IFF_ALLMULTI = 0x100, 0x200
_KEY_OK = re.compile(r"^[A-Za-z0-9_./\-]+$")


@dataclass(frozen=True)
class Tuning:
    sysctls: dict[str, str] = field(default_factory=dict)   # slash path under /proc/sys -> value
    mac: str = ""
    mtu: int = 0
    promisc: bool | None = None
    allmulti: bool | None = None
    txqlen: int | None = None
    data_dir: str = DEFAULT_DATA_DIR


def _sysctl_path(key: str, ifname: str, fieldname: str) -> str:
    if not isinstance(key, str) or not key or not _KEY_OK.match(key) or ".." in key.split("/") or "/../" in key \
            or key.startswith("/"):
        raise config_error(fieldname, f"invalid sysctl key {key!r}")
    path = key.replace(".", "/") if "/" not in key else key
    path = "/".join(ifname if part == "IFNAME" else part for part in path.split("/"))
    if not path.startswith("net/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise config_error(fieldname, f"sysctl {key!r} is not under net/")
    return path


def _allowed(paths: list[str]) -> None:
    try:
        with open(ALLOWLIST) as f:
            patterns = [re.compile(line.strip()) for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return
    for p in paths:
        dotted = p.replace("/", ".")
        if not any(rx.fullmatch(dotted) or rx.fullmatch(p) for rx in patterns):
            raise config_error("sysctl", f"{dotted} is not in the allowlist {ALLOWLIST}")


def _opt_bool(src: dict[str, Any], key: str, fieldname: str) -> bool | None:
    v = src.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise config_error(fieldname, f"must be true or false, not {v!r}")
    return v


def _opt_int(src: dict[str, Any], key: str, fieldname: str, hi: int) -> int | None:
    v = src.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise config_error(fieldname, f"must be an integer 0..{hi}, not {v!r}")
    return v


def parse_conf(req: Request) -> Tuning:
    c = dict(req.config)
    args = c.get("args", {}).get("cni", {}) if isinstance(c.get("args"), dict) else {}
    src = {**c, **{k: v for k, v in (args or {}).items() if k in ("mac", "mtu", "promisc", "allmulti", "sysctl",
                                                                    "txQLen")}}
    raw = src.get("sysctl") or {}
    if not isinstance(raw, dict):
        raise config_error("sysctl", "must be an object of key: value strings")
    sysctls: dict[str, str] = {}
    for key, value in raw.items():
        path = _sysctl_path(key, req.ifname, f"sysctl[{key!r}]")
        if path in sysctls:
            raise config_error("sysctl", f"{key!r} is given twice")
        if not isinstance(value, (str, int)) or isinstance(value, bool) or "\n" in str(value):
            raise config_error(f"sysctl[{key!r}]", f"value must be a string, not {value!r}")
        sysctls[path] = str(value)
    _allowed(list(sysctls))
    mac = requested_mac(req) or (check_mac(src["mac"], "mac") if isinstance(src.get("mac"), str) and src["mac"]
                                 else "")
    if src.get("mac") and not isinstance(src["mac"], str):
        raise config_error("mac", f"must be a string, not {src['mac']!r}")
    return Tuning(sysctls, mac, _opt_int(src, "mtu", "mtu", 65535) or 0, _opt_bool(src, "promisc", "promisc"),
                  _opt_bool(src, "allmulti", "allmulti"), _opt_int(src, "txQLen", "txQLen", 2 ** 31 - 1),
                  get_path(c, "dataDir", DEFAULT_DATA_DIR))


def _saved_path(t: Tuning, req: Request) -> str:
    return os.path.join(t.data_dir, req.network, f"{req.container_id}_{req.ifname}.json")


def _snapshot(t: Tuning, lk: Link) -> dict[str, Any]:
    saved: dict[str, Any] = {"sysctl": {}}
    for path in t.sysctls:
        try:
            saved["sysctl"][path] = sysctl.read(path)
        except OSError as e:
            raise config_error(f"sysctl[{path}]", f"cannot read /proc/sys/{path}: {e.strerror}") from None
    if t.mac:
        saved["mac"] = lk.mac
    if t.mtu:
        saved["mtu"] = lk.mtu
    if t.promisc is not None:
        saved["promisc"] = lk.promisc
    if t.allmulti is not None:
        saved["allmulti"] = lk.allmulti
    if t.txqlen is not None:
        saved["txQLen"] = lk.txqlen
    return saved


def _apply(pod: Rtnl, lk: Link, values: dict[str, Any]) -> None:
    for path, value in values.get("sysctl", {}).items():
        sysctl.write(path, value)
    if values.get("mac"):
        pod.set_link(lk.index, address=values["mac"])
    if values.get("mtu"):
        pod.set_link(lk.index, mtu=values["mtu"])
    if values.get("promisc") is not None:
        pod.set_flag(lk.index, IFF_PROMISC, values["promisc"])
    if values.get("allmulti") is not None:
        pod.set_flag(lk.index, IFF_ALLMULTI, values["allmulti"])
    if values.get("txQLen") is not None:
        pod.set_link(lk.index, txqlen=values["txQLen"])


def _wanted(t: Tuning) -> dict[str, Any]:
    return {"sysctl": t.sysctls, "mac": t.mac, "mtu": t.mtu, "promisc": t.promisc, "allmulti": t.allmulti,
            "txQLen": t.txqlen}


def add(req: Request) -> Result:
    t = parse_conf(req)
    prev = require_prev_result(req, "tuning")
    saved_at = _saved_path(t, req)
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod, netns.entered(fd):
        lk = pod.link(req.ifname)
        if lk is None:
            raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
        original = _snapshot(t, lk)
        if not os.path.exists(saved_at):  # a repeated ADD must keep the first originals
            os.makedirs(os.path.dirname(saved_at), mode=0o700, exist_ok=True)
            with open(saved_at + ".tmp", "w") as f:
                json.dump(original, f)
            os.replace(saved_at + ".tmp", saved_at)
        try:
            _apply(pod, lk, _wanted(t))
        except (NetError, OSError):
            with contextlib.suppress(NetError, OSError):
                _apply(pod, lk, original)
            with contextlib.suppress(OSError):
                os.unlink(saved_at)
            raise
        mac = pod.require_link(req.ifname).mac if t.mac else lk.mac
    ifaces = tuple(Interface(i.name, mac, i.mtu, i.sandbox, i.socket_path, i.pci_id)
                   if i.name == req.ifname and i.sandbox == req.netns else i for i in prev.interfaces)
    return Result(prev.cni_version, ifaces, prev.ips, prev.routes, prev.dns)


def delete(req: Request) -> None:
    """Put the saved originals back, if the pod's interface is still there; forget them."""
    data_dir = get_path(req.config, "dataDir", DEFAULT_DATA_DIR)
    saved_at = os.path.join(data_dir, req.network, f"{req.container_id}_{req.ifname}.json")
    try:
        with open(saved_at) as f:
            original = json.load(f)
    except (OSError, ValueError):
        return
    if req.netns:
        try:
            with netns.opened(req.netns) as fd, open_rtnl(fd) as pod, netns.entered(fd):
                lk = pod.link(req.ifname)
                if lk is not None:
                    _apply(pod, lk, original)
        except NetnsGone:
            pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(saved_at)


def check(req: Request) -> None:
    t = parse_conf(req)
    require_prev_result(req, "tuning")
    with netns.opened(req.netns) as fd, open_rtnl(fd) as pod, netns.entered(fd):
        lk = pod.link(req.ifname)
        if lk is None:
            raise CheckFailed(f"interface {req.ifname!r} not found in {req.netns}")
        for path, value in t.sysctls.items():
            if sysctl.read(path) != value:
                raise CheckFailed(f"sysctl {path} is {sysctl.read(path)!r}, config says {value!r}")
        for name, have, want in (("mac", lk.mac.lower(), t.mac or None), ("mtu", lk.mtu, t.mtu or None),
                                 ("promisc", lk.promisc, t.promisc), ("allmulti", lk.allmulti, t.allmulti),
                                 ("txQLen", lk.txqlen, t.txqlen)):
            if want is not None and have != want:
                raise CheckFailed(f"{req.ifname} {name} is {have}, config says {want}")


def status(req: Request) -> None:
    parse_conf(req)


def gc(req: Request) -> None:
    """Forget saved originals of attachments the runtime no longer lists."""
    valid = valid_attachments(req)
    d = os.path.join(get_path(req.config, "dataDir", DEFAULT_DATA_DIR), req.network)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(d):
            if not name.endswith(".json"):
                continue
            cid, _, ifname = name[:-5].rpartition("_")
            if (cid, ifname) not in valid:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(d, name))


PLUGIN = Plugin("tuning", add, delete, check, status, gc)
