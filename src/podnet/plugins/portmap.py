"""podnet-portmap: hostPort → pod port, on nftables (the reference `portmap`'s job).

A chained plugin: reads `runtimeConfig.portMappings` (containerd's capitalised keys
too), maps each onto the pod's address from prevResult, and passes prevResult on.
`snat` (default true) masquerades hairpin and localhost flows; `masqAll` every
mapped flow.  `hairpinScope` (podnet's): "subnet" (default) — a mapped flow from any address of
the pod's subnet is masqueraded, since such a client could be answered around the node (on a
bridge); "pod" — only the pod's own flows to its host port (the underlay modes: their answers
go back through the leg, so clients keep their address).  The iptables-only keys (markMasqBit, externalSetMarkChain) are
accepted and have no effect; raw match fragments (conditionsV4/V6) are refused,
because config strings never reach an nft script.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from ..net import conntrack, nft, sysctl
from ..net import portmap_nft as pm
from ..net.errors import NftError
from ..net.rtnl import open_rtnl
from .common import check_link_name, get_bool, get_str, require_prev_result, valid_attachments
from .errors import CheckFailed, NotAvailable, PortInUse

PROTOCOLS = ("tcp", "udp", "sctp")
KEYS = {"hostport": "hostPort", "containerport": "containerPort", "protocol": "protocol", "hostip": "hostIP"}


def _port(entry: dict[str, Any], key: str, i: int) -> int:
    v = entry.get(key)
    field = f"runtimeConfig.portMappings[{i}].{key}"
    if isinstance(v, bool) or not isinstance(v, int):
        raise config_error(field, f"must be an integer port, not {v!r}")
    if not 1 <= v <= 65535:
        raise config_error(field, f"{v} is out of range 1..65535")
    return v


def parse_mappings(req: Request) -> list[dict[str, Any]]:
    """runtimeConfig.portMappings, validated; keys normalised (containerd sends HostPort…)."""
    raw = req.runtime_config.get("portMappings", [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise config_error("runtimeConfig.portMappings", "must be a list")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise config_error(f"runtimeConfig.portMappings[{i}]", "must be an object")
        entry = {str(k): v for k, v in entry.items()}
        e = {KEYS.get(k.lower(), k): v for k, v in entry.items()}
        proto = e.get("protocol") or "tcp"
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise config_error(f"runtimeConfig.portMappings[{i}].protocol",
                               f"unknown protocol {proto!r} (tcp, udp or sctp)")
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        hip = e.get("hostIP") or ""
        if not isinstance(hip, str):
            raise config_error(f"runtimeConfig.portMappings[{i}].hostIP", f"must be a string, not {hip!r}")
        if hip:
            try:
                host_ip = ipaddress.ip_address(hip)
            except ValueError:
                raise config_error(f"runtimeConfig.portMappings[{i}].hostIP",
                                   f"{hip!r} is not an IP address") from None
            if host_ip.is_unspecified:
                host_ip = None
        out.append({"hostPort": _port(e, "hostPort", i), "containerPort": _port(e, "containerPort", i),
                    "protocol": proto.lower(), "hostIP": host_ip})
    return out


def hairpin_scope(req: Request) -> str:
    scope = get_str(req.config, "hairpinScope", "subnet") or "subnet"
    if scope not in ("subnet", "pod"):
        raise config_error("hairpinScope", f"must be subnet or pod, not {scope!r}")
    return scope


def parse_conf(req: Request) -> tuple[bool, bool]:
    c = req.config
    for key in ("conditionsV4", "conditionsV6"):
        if c.get(key):
            raise config_error(key, "raw match conditions are not supported: podnet never splices config "
                                    "text into firewall rules")
    backend = get_str(c, "backend", "nftables")
    if backend not in ("", "nftables", "iptables"):
        raise config_error("backend", f"unknown backend {backend!r} (podnet always uses nftables)")
    return get_bool(c, "snat", True), get_bool(c, "masqAll")


def pod_addresses(prev: Result) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The first IPv4 and first IPv6 address of the pod's interface(s) in prevResult."""
    chosen: dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface] = {}
    for ip in prev.ips:
        in_pod = (ip.interface is None or ip.interface >= len(prev.interfaces)
                  or bool(prev.interfaces[ip.interface].sandbox))
        if in_pod and ip.family not in chosen:
            chosen[ip.family] = ip.address
    return list(chosen.values())


def build(req: Request, prev: Result, mappings: list[dict[str, Any]]) -> list[pm.Mapping]:
    own = hairpin_scope(req) == "pod"
    out = []
    for m in mappings:
        for a in pod_addresses(prev):
            if m["hostIP"] is not None and m["hostIP"].version != a.version:
                continue
            hairpin = ipaddress.ip_network(f"{a.ip}/{a.max_prefixlen}") if own else a.network
            out.append(pm.Mapping(m["hostPort"], m["containerPort"], m["protocol"], m["hostIP"], a.ip, hairpin))
    return out


def _allow_localhost(prev: Result, pod_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
    """route_localnet on the host interface that leads to the pod (the bridge), so a
    DNATed 127.0.0.1 packet may leave through it; nowhere else.  prevResult names it
    (its first interface outside the pod: the bridge, or ptp's host veth); otherwise
    the kernel's route to the pod does."""
    host_side = next((i.name for i in prev.interfaces if not i.sandbox), "")
    if host_side:
        sysctl.ensure(f"net/ipv4/conf/{check_link_name(host_side, 'prevResult.interfaces')}/route_localnet", 1)
        return
    with open_rtnl() as host:
        for ip in pod_ips:
            if ip.version != 4:
                continue
            oif = host.route_oif(ip)
            lk = host.link_by_index(oif) if oif else None
            if lk is not None:
                sysctl.ensure(f"net/ipv4/conf/{lk.name}/route_localnet", 1)


def add(req: Request) -> Result:
    snat, masq_all = parse_conf(req)
    prev = require_prev_result(req, "portmap")
    wanted = build(req, prev, parse_mappings(req))
    if not wanted:
        return prev
    try:
        pm.add(req.network, req.container_id, wanted, snat, masq_all)
    except NftError as e:
        if "File exists" not in str(e):
            raise
        clash = _first_clash(req, wanted)
        if clash:
            raise PortInUse(clash) from None
        pm.remove(req.network, req.container_id)  # our own earlier ADD: replace it
        pm.add(req.network, req.container_id, wanted, snat, masq_all)
    if snat:
        _allow_localhost(prev, [m.pod_ip for m in wanted])
    for fam in (4, 6):
        conntrack.flush_udp_to_ports(sorted({m.host_port for m in wanted
                                             if m.protocol == "udp" and m.pod_ip.version == fam}), fam)
    return prev


def _first_clash(req: Request, wanted: list[pm.Mapping]) -> str:
    mine = nft.owner_tag(req.network, req.container_id)
    for m in wanted:
        owner = pm.owner_of(m.protocol, m.host_port, m.host_ip, m.pod_ip.version)
        if owner and owner != mine:
            where = f"{m.host_ip}:" if m.host_ip else ""
            return f"host port {where}{m.host_port}/{m.protocol} is already mapped (network {owner.split(' ')[0]}, " \
                   f"container {owner.partition(' ')[2]})"
    return ""


def delete(req: Request) -> None:
    """By container ID alone: a config that ADD refused must still be deletable."""
    pm.remove(req.network, req.container_id)


def check(req: Request) -> None:
    parse_conf(req)
    prev = require_prev_result(req, "portmap")
    have = pm.mapped(req.network, req.container_id)
    for m in build(req, prev, parse_mappings(req)):
        key = (m.protocol, m.host_port, str(m.host_ip) if m.host_ip else "", f"{m.pod_ip} . {m.container_port}")
        if key not in have:
            raise CheckFailed(f"port mapping {m.host_port}/{m.protocol} → {m.pod_ip}:{m.container_port} is missing")


def status(req: Request) -> None:
    parse_conf(req)
    if not nft.available():
        raise NotAvailable("nftables is not available on this node")


def gc(req: Request) -> None:
    pm.remove_stale(req.network, {cid for cid, _ in valid_attachments(req)})


PLUGIN = Plugin("portmap", add, delete, check, status, gc)
