"""podnet-host-local: node-local IPAM on the reference host-local's on-disk store."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from ..cni import version as V
from ..cni.errors import CNIError, config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, IPConfig, Result, Route, parse_net
from ..ipam import allocator
from ..ipam.filestore import DEFAULT_DATA_DIR, FileStore
from ..ipam.ranges import RangeSet, parse_range_sets
from ..ipam.store import Handle
from .common import get_path, get_str, valid_attachments
from .errors import CheckFailed, NotAvailable


@dataclass(frozen=True)
class HostLocalConf:
    sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: str
    dns: DNS


def parse_routes(raw: Any, field: str) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise config_error(field, "must be a list")
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or "dst" not in r:
            raise config_error(f"{field}[{i}]", "a route needs a dst")
        try:
            gw = ipaddress.ip_address(r["gw"]) if r.get("gw") else None
            out.append(Route(dst=parse_net(r["dst"], f"{field}[{i}].dst"), gw=gw))
        except (CNIError, ValueError):
            raise config_error(f"{field}[{i}]", f"invalid route {r!r}") from None
    return tuple(out)


def parse_resolv_conf(path: str) -> DNS:
    """The nameserver/domain/search/options lines of a resolv.conf file."""
    ns, search, opts, domain = [], [], [], ""
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith(("#", ";")):
                    continue
                if parts[0] == "nameserver" and len(parts) > 1:
                    ns.append(parts[1])
                elif parts[0] == "domain" and len(parts) > 1:
                    domain = parts[1]
                elif parts[0] == "search":
                    search += parts[1:]
                elif parts[0] == "options":
                    opts += parts[1:]
    except OSError as e:
        raise config_error("ipam.resolvConf", f"cannot read {path}: {e.strerror}") from None
    return DNS(tuple(ns), domain, tuple(search), tuple(opts))


def parse_conf(req: Request) -> HostLocalConf:
    ipam = req.config.get("ipam")
    if not isinstance(ipam, dict):
        raise config_error("ipam", "missing IPAM configuration")
    extra = req.runtime_config.get("ipRanges")
    sets = parse_range_sets(ipam, extra)
    if len(sets) > 1 and not V.at_least(req.cni_version, "0.3.0"):
        fams = [s.ranges[0].subnet.version for s in sets]
        if len(set(fams)) != len(fams):
            raise config_error("ipam.ranges", f"cniVersion {req.cni_version} allows one address per family")
    resolv = get_str(ipam, "resolvConf", prefix="ipam.")
    return HostLocalConf(sets, parse_routes(ipam.get("routes"), "ipam.routes"),
                         get_path(ipam, "dataDir", DEFAULT_DATA_DIR, prefix="ipam."),
                         parse_resolv_conf(resolv) if resolv else DNS())


def requested_ips(req: Request) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips (each may carry a /prefix)."""
    raw: list[tuple[str, str]] = []
    if req.args.get("IP"):
        raw += [("CNI_ARGS IP", s) for s in req.args["IP"].split(",") if s]
    args = req.config.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict):
        raw += [("args.cni.ips", s) for s in args["cni"].get("ips") or []]
    raw += [("runtimeConfig.ips", s) for s in req.runtime_config.get("ips") or []]
    out = []
    for field, s in raw:
        try:
            out.append(ipaddress.ip_interface(str(s).strip()).ip)
        except ValueError:
            raise config_error(field, f"invalid IP {s!r}") from None
    return list(dict.fromkeys(out))


def _store(req: Request, conf: HostLocalConf) -> FileStore:
    return FileStore(conf.data_dir, req.network)


def add(req: Request) -> Result:
    conf = parse_conf(req)
    with _store(req, conf).session() as sess:
        allocs = allocator.allocate(sess, conf.sets, Handle(req.container_id, req.ifname), requested_ips(req))
    ips = tuple(IPConfig(address=a.address, gateway=a.gateway) for a in allocs)
    return Result(req.cni_version, (), ips, conf.routes, conf.dns)


def delete(req: Request) -> None:
    conf = parse_conf(req)
    with _store(req, conf).session() as sess:
        allocator.release(sess, Handle(req.container_id, req.ifname))


def check(req: Request) -> None:
    conf = parse_conf(req)
    with _store(req, conf).session() as sess:
        if not sess.get(Handle(req.container_id, req.ifname)):
            raise CheckFailed(f"host-local: Failed to find address added by container {req.container_id}")


def status(req: Request) -> None:
    conf = parse_conf(req)
    path = os.path.join(conf.data_dir, req.network)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".podnet-status.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise NotAvailable(f"host-local data dir {path} is not writable: {e.strerror}") from None


def gc(req: Request) -> None:
    conf = parse_conf(req)
    valid = {Handle(cid, ifn) for cid, ifn in valid_attachments(req)}
    with _store(req, conf).session() as sess:
        allocator.gc(sess, valid)


PLUGIN = Plugin("host-local", add, delete, check, status, gc)
