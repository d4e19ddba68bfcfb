"""podnet-neutron-ipam: each pod interface's address is an OpenStack Neutron port (ipam/neutron.py).

IPAM config (inside a main plugin's `ipam`; credentials never inline):
  neutronUrl       the Neutron endpoint (http://host:9696), or
  authUrl          keystone v3 (…/v3) + credentialsFile: a JSON file (a Secret in the DaemonSet) with
                   username/password/projectName[/userDomainName/projectDomainName] or
                   applicationCredentialId/applicationCredentialSecret [, region, interface]
  network          the Neutron network: ID or name (required)
  subnet           its subnet: ID or name (default: the network's only IPv4 subnet)
  nodePort         the node VM's port ID, or nodeAddress: its address on the subnet (default: the
                   host's own address inside the subnet)
  node             this node's name (default: $PODNET_NODE_NAME, else the hostname)
  addressPairs     per-ip (default) | cidr (podRange + blockSize: one pair per node block) | none
  pairMac          pod (default: the pod port's MAC — the macvlan pod takes it) | node (ipvlan pods
                   share the VM's MAC)
  podRange, blockSize   cidr mode: the pods' part of the subnet (best outside its allocation pools), /28
  poolSize         ready ports the agent keeps per node (0: none; through the agent only)
  timeout          seconds per Neutron call (default 10): Neutron down is code 11 within it
  routes, dns      into the result as host-local does (dns default: the subnet's nameservers)
A static address comes from the `ips` capability, args.cni.ips or CNI_ARGS IP.  The result carries
the port's MAC as the interface's (`interfaces[0]`), which podnet's macvlan takes.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Interface, IPConfig, Result, Route, dns_from_dict
from ..ipam import neutron
from ..ipam.neutron_api import Credentials, NeutronAPI
from .common import get_int, get_str, prev_result, valid_attachments
from .errors import CheckFailed, NotAvailable
from .host_local import parse_routes, requested_ips

NODE_ENV = "PODNET_NODE_NAME"
PAIR_MODES = ("per-ip", "cidr", "none")
INLINE_SECRETS = ("password", "applicationCredentialSecret", "token", "username")
_apis: dict[tuple[Any, ...], NeutronAPI] = {}
_apis_lock = threading.Lock()


@dataclass(frozen=True)
class NeutronConf:
    endpoint: str
    credentials: Credentials | None
    settings: neutron.Settings
    pool_size: int
    timeout: float
    routes: tuple[Route, ...]
    dns: DNS


def _str(ipam: dict[str, Any], key: str, default: str = "") -> str:
    return get_str(ipam, key, default, prefix="ipam.")


def _ipam(req: Request) -> dict[str, Any]:
    ipam = req.config.get("ipam") or {}
    if not isinstance(ipam, dict):
        raise config_error("ipam", f"must be an object, not {ipam!r}")
    return ipam


def credentials_from_file(ipam: dict[str, Any], auth_url: str) -> Credentials:
    path = _str(ipam, "credentialsFile")
    if not path:
        raise config_error("ipam.credentialsFile", "authUrl needs credentialsFile (a JSON file: username, password, "
                                                   "projectName … or applicationCredentialId/Secret)")
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise config_error("ipam.credentialsFile", f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise config_error("ipam.credentialsFile", f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise config_error("ipam.credentialsFile", f"{path} must hold a JSON object")
    text = {k: str(v) for k, v in doc.items() if isinstance(v, str | int)}
    if text.get("applicationCredentialId"):
        if not text.get("applicationCredentialSecret"):
            raise config_error("ipam.credentialsFile", f"{path}: applicationCredentialId needs applicationCredentialSecret")
    elif not (text.get("username") and text.get("password") and text.get("projectName")):
        raise config_error("ipam.credentialsFile", f"{path}: needs username, password and projectName "
                                                   "(or applicationCredentialId and applicationCredentialSecret)")
    return Credentials(auth_url.rstrip("/"), text.get("username", ""), text.get("password", ""),
                       text.get("userDomainName", "Default"), text.get("projectName", ""),
                       text.get("projectDomainName", "Default"), text.get("applicationCredentialId", ""),
                       text.get("applicationCredentialSecret", ""), text.get("region", ""),
                       text.get("interface", "public"))


def parse_conf(req: Request) -> NeutronConf:
    ipam = _ipam(req)
    for key in INLINE_SECRETS:
        if key in ipam:
            raise config_error(f"ipam.{key}", "credentials never go in the conflist: put them in credentialsFile")
    endpoint, auth_url = _str(ipam, "neutronUrl"), _str(ipam, "authUrl")
    if not endpoint and not auth_url:
        raise config_error("ipam.neutronUrl", "give neutronUrl (the Neutron endpoint) or authUrl (keystone v3)")
    for key, url in (("neutronUrl", endpoint), ("authUrl", auth_url)):
        if url and not url.startswith(("http://", "https://")):
            raise config_error(f"ipam.{key}", f"{url!r} is not an http(s) URL")
    creds = credentials_from_file(ipam, auth_url) if auth_url else None
    network = _str(ipam, "network")
    if not network:
        raise config_error("ipam.network", "the Neutron network (ID or name) is required")
    pairs = _str(ipam, "addressPairs", "per-ip")
    if pairs not in PAIR_MODES:
        raise config_error("ipam.addressPairs", f"{pairs!r} is not one of {', '.join(PAIR_MODES)}")
    pair_mac = _str(ipam, "pairMac", "pod")
    if pair_mac not in ("pod", "node"):
        raise config_error("ipam.pairMac", f"{pair_mac!r} is not pod or node")
    pod_range = None
    if "podRange" in ipam:
        try:
            pod_range = ipaddress.ip_network(str(ipam["podRange"]), strict=True)
        except ValueError:
            raise config_error("ipam.podRange", f"{ipam['podRange']!r} is not a network (a CIDR string)") from None
    block = get_int(ipam, "blockSize", 28, 1, 128, prefix="ipam.")
    if pairs == "cidr":
        if pod_range is None:
            raise config_error("ipam.podRange", "addressPairs cidr needs podRange (the pods' part of the subnet)")
        if not pod_range.prefixlen <= block <= pod_range.max_prefixlen - 2:
            raise config_error("ipam.blockSize", f"must be between /{pod_range.prefixlen} and "
                                                 f"/{pod_range.max_prefixlen - 2} for {pod_range}, not {block}")
    node_address = _str(ipam, "nodeAddress")
    if node_address:
        try:
            ipaddress.ip_address(node_address)
        except ValueError:
            raise config_error("ipam.nodeAddress", f"{node_address!r} is not an IP address") from None
    timeout = get_int(ipam, "timeout", 10, 1, 300, prefix="ipam.")
    node = _str(ipam, "node") or os.environ.get(NODE_ENV, "") or socket.gethostname()
    settings = neutron.Settings(network=network, subnet=_str(ipam, "subnet"), node=node, cni_network=req.network,
                                node_port=_str(ipam, "nodePort"), node_address=node_address, pairs=pairs,
                                pair_mac=pair_mac, pod_range=pod_range, block_size=block,
                                family=pod_range.version if pod_range else 4)
    return NeutronConf(endpoint, creds, settings, get_int(ipam, "poolSize", 0, 0, 1000, prefix="ipam."),
                       float(timeout), parse_routes(ipam.get("routes"), "ipam.routes"), dns_from_dict(ipam.get("dns")))


def api_for(conf: NeutronConf) -> NeutronAPI:
    """One client per (endpoint, credentials) per process: the agent keeps its token across pods."""
    key = (conf.endpoint, conf.credentials, conf.timeout)
    with _apis_lock:
        api = _apis.get(key)
        if api is None:
            api = _apis[key] = NeutronAPI(conf.endpoint, conf.credentials, conf.timeout)
        return api


def client(req: Request) -> tuple[NeutronConf, neutron.NeutronIpam]:
    conf = parse_conf(req)
    ipam = neutron.NeutronIpam(api_for(conf), conf.settings)
    if not conf.settings.node_port and not conf.settings.node_address and conf.settings.pairs != "none":
        ipam.s = _with_node_address(ipam)
    return conf, ipam


def _with_node_address(ipam: neutron.NeutronIpam) -> neutron.Settings:
    """The host's own address inside the subnet: how the node VM's port is found by default."""
    from dataclasses import replace

    from ..net.rtnl import open_rtnl
    sub = ipam.subnet()
    with open_rtnl() as host:
        for lk in host.links():
            for a in host.addrs(lk.index, sub.cidr.version):
                if a.ip in sub.cidr:
                    return replace(ipam.s, node_address=str(a.ip))
    raise config_error("ipam.nodeAddress", f"this host has no address in subnet {sub.cidr}: give nodePort or "
                                           "nodeAddress")


def _pod_name(req: Request) -> str:
    return neutron.port_name(req.args.get("K8S_POD_NAMESPACE", ""), req.args.get("K8S_POD_NAME", ""), req.ifname,
                             req.container_id)


def add(req: Request) -> Result:
    conf, ipam = client(req)
    asked = requested_ips(req)
    if len(asked) > 1:
        raise config_error("runtimeConfig.ips", "podnet-neutron-ipam gives one address per interface")
    static = asked[0] if asked else None
    from ..ipam import neutron_pool
    keeper = neutron_pool.current()
    claim: Callable[[], neutron.Port | None] | None = None
    if keeper is not None and conf.pool_size > 0:
        keeper.want(ipam, conf.pool_size)
        claim = functools.partial(keeper.take, ipam, req.container_id, req.ifname, _pod_name(req))
    port = ipam.allocate(req.container_id, req.ifname, _pod_name(req), static, claim)
    sub = ipam.subnet()
    ip = IPConfig(ipaddress.ip_interface(f"{port.ip}/{sub.cidr.prefixlen}"), sub.gateway, 0)
    dns = conf.dns if conf.dns != DNS() else DNS(nameservers=sub.dns)
    return Result(req.cni_version, (Interface(req.ifname, port.mac),), (ip,), conf.routes, dns)


def delete(req: Request) -> None:
    _, ipam = client(req)
    ipam.release(req.container_id, req.ifname)


def check(req: Request) -> None:
    _, ipam = client(req)
    port = ipam.find(req.container_id, req.ifname)
    if port is None:
        raise CheckFailed(f"neutron-ipam: no Neutron port for {req.container_id}/{req.ifname}")
    prev = prev_result(req)
    if prev is not None:
        want = {i.address.ip for i in prev.ips}
        if want and port.ip not in want:
            raise CheckFailed(f"neutron-ipam: the port of {req.container_id}/{req.ifname} holds {port.ip}, "
                              f"prevResult says {sorted(map(str, want))}")


def status(req: Request) -> None:
    conf = parse_conf(req)
    try:
        neutron.NeutronIpam(api_for(conf), conf.settings).subnet()
    except Exception as e:  # noqa: BLE001 - any failure to reach Neutron or find the subnet: not ready
        raise NotAvailable(f"neutron-ipam: {e}") from None


def gc(req: Request) -> None:
    _, ipam = client(req)
    ipam.gc(valid_attachments(req))
    if ipam.s.pairs == "cidr":
        ipam.release_empty_blocks()


PLUGIN = Plugin("neutron-ipam", add, delete, check, status, gc)
