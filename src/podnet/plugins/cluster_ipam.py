"""podnet-cluster-ipam: one address space shared by every node, kept in etcd.

IPAM config (inside a main plugin's `ipam`):
  etcdEndpoints  ["http://127.0.0.1:2379", …]   (several: the next is tried when one is down)
  prefix         key prefix, default "/podnet/"
  subnet (+ gateway, blockSize) | ranges (host-local's shape) | pool {name, cidr, gateway, blockSize,
                 exclude} | pools [ … ] (one per family)
  node           this node's name (default: the hostname)
  routes, dns    passed into the result as host-local does
The pool is created in etcd on first use (named after the network unless `name` is given);
an existing pool of that name must have the same CIDR.  See ipam/cluster.py for the model.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, IPConfig, Result, Route, dns_from_dict
from ..ipam.cluster import DEFAULT_BLOCK, DEFAULT_PREFIX, ClusterIpam, Pool, handle_id
from ..ipam.errors import StoreUnavailable
from .common import get_path, get_str, prev_result, valid_attachments
from .errors import CheckFailed, NotAvailable
from .host_local import parse_routes

NODE_ENV = "PODNET_NODE_NAME"
_clients: dict[tuple[Any, ...], ClusterIpam] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class ClusterConf:
    endpoints: tuple[str, ...]
    tls: tuple[bytes, bytes | None, bytes | None] | None   # CA, client cert, client key (PEM)
    prefix: str
    pools: tuple[Pool, ...]
    networks: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network]   # pool name → its on-link subnet, if wider
    node: str
    routes: tuple[Route, ...]
    dns: DNS


def _pool(raw: Any, field: str, default_name: str, block_field: str = "") -> Pool:
    """One pool from its object; `block_field` names where its blockSize is written when that is
    not inside the object (the `subnet` and `ranges` shapes read ipam.blockSize)."""
    if not isinstance(raw, dict):
        raise config_error(field, "must be an object with a cidr")
    text = raw.get("cidr") or raw.get("subnet")
    try:
        if not isinstance(text, str):
            raise ValueError
        cidr = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise config_error(f"{field}.cidr", f"{text!r} is not a network (a CIDR string)") from None
    block_field = block_field or f"{field}.blockSize"
    largest = cidr.max_prefixlen - 2
    if "blockSize" in raw:
        block = raw["blockSize"]
        if isinstance(block, bool) or not isinstance(block, int) or not cidr.prefixlen <= block <= largest:
            raise config_error(block_field, f"must be between /{cidr.prefixlen} and /{largest} for {cidr}, "
                                            f"not {block!r}")
    else:     # the default /26 (/122), or the whole subnet when it is smaller than that
        block = max(DEFAULT_BLOCK[cidr.version], cidr.prefixlen)
        if block > largest:
            raise config_error(field, f"{cidr} is too small for a pool (at most /{largest})")
    gw_raw, exclude_raw = raw.get("gateway"), raw.get("exclude") or []
    if gw_raw and not isinstance(gw_raw, str):
        raise config_error(f"{field}.gateway", f"must be an IP address string, not {gw_raw!r}")
    if not isinstance(exclude_raw, list) or not all(isinstance(x, str) for x in exclude_raw):
        raise config_error(f"{field}.exclude", f"must be a list of IP address strings, not {exclude_raw!r}")
    try:
        gw = ipaddress.ip_address(gw_raw) if gw_raw else None
        exclude = frozenset(ipaddress.ip_address(x) for x in exclude_raw)
    except ValueError as e:
        raise config_error(field, f"bad address: {e}") from None
    network = _network(raw, field, cidr)
    if gw is not None and gw not in network:
        raise config_error(f"{field}.gateway", f"{gw} is not in {network}")
    name = get_str(raw, "name") or (default_name if cidr.version == 4 else f"{default_name}-v6")
    return Pool(name, cidr, block, gw, exclude)


def _network(raw: dict[str, Any], field: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
             ) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The pool's `network`: the on-link subnet its addresses are given in (a pool carved out of a
    datacenter subnet: the pods' addresses carry the subnet's prefix, so they reach its other
    hosts directly), default the pool itself."""
    text = raw.get("network")
    if text is None:
        return cidr
    try:
        if not isinstance(text, str):
            raise ValueError
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise config_error(f"{field}.network", f"{text!r} is not a network (a CIDR string)") from None
    if net.version != cidr.version or not cidr.subnet_of(net):  # type: ignore[arg-type]
        raise config_error(f"{field}.network", f"{net} does not contain the pool {cidr}")
    return net


def _tls_files(ipam: dict[str, Any]) -> tuple[bytes, bytes | None, bytes | None] | None:
    """etcdCAFile (+ etcdCertFile and etcdKeyFile for client auth), read now so a bad path is a config error."""
    paths = {k: get_path(ipam, k, prefix="ipam.") for k in ("etcdCAFile", "etcdCertFile", "etcdKeyFile")}
    if not any(paths.values()):
        return None
    if not paths["etcdCAFile"]:
        raise config_error("ipam.etcdCAFile", "TLS needs the CA that signed etcd's certificate")
    if bool(paths["etcdCertFile"]) != bool(paths["etcdKeyFile"]):
        raise config_error("ipam.etcdKeyFile", "etcdCertFile and etcdKeyFile go together")
    out: list[bytes | None] = []
    for key, path in paths.items():
        if not path:
            out.append(None)
            continue
        try:
            with open(path, "rb") as f:
                out.append(f.read())
        except OSError as e:
            raise config_error(f"ipam.{key}", f"cannot read {path}: {e.strerror}") from None
    return (out[0] or b"", out[1], out[2])


def parse_conf(req: Request) -> ClusterConf:
    ipam = req.config.get("ipam") or {}
    if not isinstance(ipam, dict):
        raise config_error("ipam", f"must be an object, not {ipam!r}")
    eps = ipam.get("etcdEndpoints")
    if not isinstance(eps, list) or not eps or not all(isinstance(e, str) and e for e in eps):
        raise config_error("ipam.etcdEndpoints", "a list of etcd client URLs (http://host:port) is required")
    tls = _tls_files(ipam)
    if "pools" in ipam:
        raw_pools = ipam["pools"]
        if not isinstance(raw_pools, list) or not 1 <= len(raw_pools) <= 2:
            raise config_error("ipam.pools", "one pool per address family (at most two)")
        pools = tuple(_pool(p, f"ipam.pools[{i}]", req.network) for i, p in enumerate(raw_pools))
    elif "pool" in ipam:
        pools = (_pool(ipam["pool"], "ipam.pool", req.network),)
    elif "ranges" in ipam:  # host-local's shape: one range set per family, its first range is the pool
        raw_sets = ipam["ranges"]
        if not isinstance(raw_sets, list) or not 1 <= len(raw_sets) <= 2 or \
                not all(isinstance(r, list) and r and isinstance(r[0], dict) for r in raw_sets):
            raise config_error("ipam.ranges", "one or two range sets, each a list of {subnet, gateway}")
        pools = tuple(_pool({"cidr": r[0].get("subnet"), "gateway": r[0].get("gateway"),
                             **({"blockSize": ipam["blockSize"]} if "blockSize" in ipam else {})},
                            f"ipam.ranges[{i}][0]", req.network, "ipam.blockSize") for i, r in enumerate(raw_sets))
    elif "subnet" in ipam:
        flat = {k: ipam[k] for k in ("gateway", "blockSize", "exclude") if k in ipam}
        pools = (_pool({"cidr": ipam["subnet"], **flat}, "ipam", req.network, "ipam.blockSize"),)
    else:
        raise config_error("ipam.pool", "give subnet, ranges, pool or pools")
    if len({p.cidr.version for p in pools}) != len(pools):
        raise config_error("ipam.pools", "at most one pool per address family")
    prefix = get_str(ipam, "prefix", DEFAULT_PREFIX) or DEFAULT_PREFIX
    if not prefix.startswith("/") or ".." in prefix:
        raise config_error("ipam.prefix", f"{prefix!r} must be an absolute key prefix")
    node = get_str(ipam, "node") or os.environ.get(NODE_ENV, "") or socket.gethostname()
    return ClusterConf(tuple(eps), tls, prefix, pools, _networks(ipam, pools), node,
                       parse_routes(ipam.get("routes"), "ipam.routes"), dns_from_dict(ipam.get("dns")))


def _networks(ipam: dict[str, Any], pools: tuple[Pool, ...]) -> dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    raws = ipam["pools"] if isinstance(ipam.get("pools"), list) else [ipam["pool"]] if "pool" in ipam else []
    out = {}
    for raw, pool in zip(raws, pools, strict=False):
        if isinstance(raw, dict) and "network" in raw:
            out[pool.name] = _network(raw, "ipam.pool", pool.cidr)
    return out


def _ipam(conf: ClusterConf) -> ClusterIpam:
    """One client and allocator per (etcd, TLS, node, prefix) per process: the agent keeps the
    connection and the node's view of its blocks warm across pods."""
    from ..ipam.etcdkv import EtcdKV, TLSFiles  # the gRPC stack loads only when a cluster IPAM is used
    key = (conf.endpoints, conf.tls, conf.node, conf.prefix)
    with _clients_lock:
        ipam = _clients.get(key)
        if ipam is None:
            try:
                kv = EtcdKV(list(conf.endpoints), tls=TLSFiles(*conf.tls) if conf.tls else None)
            except ValueError as e:
                raise config_error("ipam.etcdEndpoints", str(e)) from None
            ipam = _clients[key] = ClusterIpam(kv, conf.node, conf.prefix)
        return ipam


def _pools(ipam: ClusterIpam, conf: ClusterConf) -> list[Pool]:
    return [ipam.ensure_pool(p) for p in conf.pools]


def add(req: Request) -> Result:
    conf = parse_conf(req)
    ipam = _ipam(conf)
    pools = _pools(ipam, conf)
    ips = ipam.allocate(handle_id(req.network, req.container_id, req.ifname), pools)
    configs = []
    for ip in ips:
        pool = next(p for p in pools if p.cidr.version == ip.version)
        asked = next(p for p in conf.pools if p.name == pool.name)
        onlink = conf.networks.get(pool.name, pool.cidr)
        # the gateway is the network's, not the allocation's: the config's wins over the stored pool's
        configs.append(IPConfig(ipaddress.ip_interface(f"{ip}/{onlink.prefixlen}"), asked.gateway or pool.gateway))
    return Result(req.cni_version, (), tuple(configs), conf.routes, conf.dns)


def delete(req: Request) -> None:
    conf = parse_conf(req)
    _ipam(conf).release(handle_id(req.network, req.container_id, req.ifname))


def check(req: Request) -> None:
    conf = parse_conf(req)
    held = _ipam(conf).get(handle_id(req.network, req.container_id, req.ifname))
    if not held:
        raise CheckFailed(f"cluster-ipam: no addresses held by {req.container_id}/{req.ifname}")
    prev = prev_result(req)
    if prev is not None:
        want = {i.address.ip for i in prev.ips}
        if want and not want <= set(held):
            raise CheckFailed(f"cluster-ipam: {req.container_id}/{req.ifname} holds {sorted(map(str, held))}, "
                                f"prevResult says {sorted(map(str, want))}")


def status(req: Request) -> None:
    conf = parse_conf(req)
    try:
        _ipam(conf).pools()
    except StoreUnavailable as e:
        raise NotAvailable(f"cluster-ipam: {e}") from None


def gc(req: Request) -> None:
    conf = parse_conf(req)
    _ipam(conf).gc(req.network, valid_attachments(req))


PLUGIN = Plugin("cluster-ipam", add, delete, check, status, gc)
