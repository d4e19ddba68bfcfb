"""hostPort mappings on nftables, in the podnet-owned table `inet podnet_portmap`.

Lookups, not chains: one map per family for mappings on every host address
(proto . port → podIP . port) and one for hostIP-bound mappings (hostIP . proto .
port → …), reached from nat prerouting/output for locally-addressed packets only.
Masquerade sets say which DNATed flows need SNAT: hairpin (pod IP . source prefix),
localhost (pod IPs whose mappings take 127.0.0.1 / ::1) and masqAll.  Every element
carries the comment "<network> <containerID>"; GC deletes by that comment, DEL the elements its
ADD recorded once their comments check out (nft_records), else by the comment too.
Only validated values (addresses, ints, protocol names, checked names) reach a script.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import nft, nft_records
from .errors import NftError

TABLE = "inet podnet_portmap"
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_ADDR = {4: "ipv4_addr", 6: "ipv6_addr"}
_P = {4: "ip", 6: "ip6"}
_LOCALHOST = {4: "127.0.0.1", 6: "::1"}


@dataclass(frozen=True)
class Mapping:
    host_port: int
    container_port: int
    protocol: str            # tcp | udp | sctp
    host_ip: IPAddr | None   # None: every host address
    pod_ip: IPAddr
    pod_net: IPNet           # the pod's subnet: sources in it are hairpin traffic


def _base() -> list[str]:
    cmds = [f"add table {TABLE}"]
    for f in (4, 6):
        a = _ADDR[f]
        cmds += [
            f"add map {TABLE} any{f} {{ type inet_proto . inet_service : {a} . inet_service; }}",
            f"add map {TABLE} bound{f} {{ type {a} . inet_proto . inet_service : {a} . inet_service; }}",
            f"add set {TABLE} hairpin{f} {{ type {a} . {a}; flags interval; }}",
            f"add set {TABLE} localhost{f} {{ type {a}; }}",
            f"add set {TABLE} masqall{f} {{ type {a}; }}",
        ]
    cmds += [
        f"add chain {TABLE} hostports",
        f"add chain {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
        f"flush chain {TABLE} hostports", f"flush chain {TABLE} prerouting",
        f"flush chain {TABLE} output", f"flush chain {TABLE} postrouting",
        f"add rule {TABLE} prerouting fib daddr type local jump hostports",
        f"add rule {TABLE} output fib daddr type local jump hostports",
    ]
    for f in (4, 6):
        p = _P[f]
        cmds += [
            f"add rule {TABLE} hostports dnat {p} to {p} daddr . meta l4proto . th dport map @bound{f}",
            f"add rule {TABLE} hostports dnat {p} to meta l4proto . th dport map @any{f}",
            f"add rule {TABLE} postrouting ct status dnat {p} daddr . {p} saddr @hairpin{f} masquerade",
            f"add rule {TABLE} postrouting ct status dnat {p} saddr {_LOCALHOST[f]} {p} daddr @localhost{f} masquerade",
            f"add rule {TABLE} postrouting ct status dnat {p} daddr @masqall{f} masquerade",
        ]
    return cmds


def _mapping_element(m: Mapping) -> tuple[str, str]:
    """(map name, key text) of a mapping's element."""
    f = m.pod_ip.version
    if m.host_ip is None:
        return f"any{f}", f"{m.protocol} . {m.host_port}"
    return f"bound{f}", f"{m.host_ip} . {m.protocol} . {m.host_port}"


def add(network: str, container_id: str, mappings: list[Mapping], snat: bool, masq_all: bool) -> None:
    """All of a pod's mappings in one transaction: either every element is in, or none; then
    the elements are recorded for the pod's DEL (nft_records)."""
    comment = nft.owner_tag(network, container_id)
    cmds = _base()
    made: list[tuple[str, str]] = []
    for m in mappings:
        name, key = _mapping_element(m)
        cmds.append(f'create element {TABLE} {name} {{ {key} comment "{comment}" : {m.pod_ip} . {m.container_port} }}')
        made.append((name, key))
    for ip, net in sorted({(m.pod_ip, m.pod_net) for m in mappings}, key=str):
        f = ip.version
        sets = ([(f"hairpin{f}", f"{ip} . {net}"), (f"localhost{f}", f"{ip}")] if snat else []) + \
            ([(f"masqall{f}", f"{ip}")] if masq_all else [])
        for name, key in sets:
            cmds.append(f'add element {TABLE} {name} {{ {key} comment "{comment}" }}')
            made.append((name, key))
    nft.run("\n".join(cmds) + "\n")
    nft.after_commit(lambda: nft_records.remember(TABLE, network, container_id, made))


_OWNED_KINDS = {"map": {"any4", "bound4", "any6", "bound6"},
                "set": {"hairpin4", "localhost4", "masqall4", "hairpin6", "localhost6", "masqall6"}}


def _owned(network: str, container_id: str | None, keep: set[str] | None = None) -> list[tuple[str, str]]:
    """(map/set name, key text) of every element owned by (network, container), or (GC) by a
    container of the network not in `keep` — read in one listing of the table (a DEL used to
    list each of its ten maps and sets in turn)."""
    out = []
    for obj in nft.list_json(f"table {TABLE}"):
        for kind, names in _OWNED_KINDS.items():
            body = obj.get(kind)
            if not isinstance(body, dict) or body.get("name") not in names:
                continue
            for elem in body.get("elem", []) or []:
                key = elem[0] if kind == "map" else elem
                if not isinstance(key, dict) or "elem" not in key:
                    continue
                if nft.owned(str(key["elem"].get("comment", "")), network, container_id, keep):
                    out.append((body["name"], _key_text(key["elem"]["val"])))
    return out


def _key_text(val: object) -> str:
    if isinstance(val, dict) and "concat" in val:
        return " . ".join(_key_text(v) for v in val["concat"])
    if isinstance(val, dict) and "prefix" in val:
        return f"{val['prefix']['addr']}/{val['prefix']['len']}"
    return str(val)


def remove(network: str, container_id: str) -> int:
    """Delete every element this container owns; 0 when there are none (DEL is idempotent).
    The elements its ADD recorded when the record checks out, else found by listing the table."""
    recorded = nft_records.recalled(TABLE, network, container_id)
    n = _delete(recorded if recorded is not None else _owned(network, container_id))
    nft_records.forget(TABLE, network, container_id)
    return n


def remove_stale(network: str, valid_ids: set[str]) -> int:
    """GC: delete this network's elements whose container is not in `valid_ids` (and their records)."""
    n = _delete(_owned(network, None, valid_ids))
    nft_records.forget_all_but(TABLE, network, valid_ids)
    return n


def _delete(elements: list[tuple[str, str]]) -> int:
    if not elements:
        return 0
    lines = [f"delete element {TABLE} {name} {{ {key} }}\n" for name, key in elements]
    try:
        nft.run("".join(lines))
    except NftError:
        for line in lines:  # one vanished meanwhile: delete the rest one by one
            nft.run_ignoring_missing(line)
    return len(elements)


def _mappings(name: str) -> Iterator[tuple[list[Any], str, Any]]:
    """(key parts: [hostIP,] protocol, hostPort; owner comment; value) of each element of a
    hostPort map (any4/6, bound4/6)."""
    for obj in nft.list_json(f"map {TABLE} {name}"):
        for elem in (obj.get("map") or {}).get("elem", []) or []:
            key = elem[0].get("elem", {}) if isinstance(elem[0], dict) else {}
            yield list(key.get("val", {}).get("concat", [])), str(key.get("comment", "")), elem[1]


def mapped(network: str, container_id: str) -> set[tuple[str, int, str, str]]:
    """(protocol, hostPort, hostIP or '', 'podIP . containerPort') present for a container (CHECK)."""
    out = set()
    owner = nft.owner_tag(network, container_id)
    for f in (4, 6):
        for name in (f"any{f}", f"bound{f}"):
            for parts, comment, value in _mappings(name):
                if comment != owner:
                    continue
                host_ip = str(parts[0]) if name.startswith("bound") else ""
                out.add((str(parts[-2]), int(parts[-1]), host_ip, _key_text(value)))
    return out


def owner_of(protocol: str, host_port: int, host_ip: IPAddr | None, family: int) -> str:
    """The 'network containerID' comment holding a host port, or '' (to explain a clash)."""
    name = f"any{family}" if host_ip is None else f"bound{family}"
    for parts, comment, _ in _mappings(name):
        if parts[-2:] == [protocol, host_port] and (host_ip is None or str(parts[0]) == str(host_ip)):
            return comment
    return ""


def target_of(protocol: str, host_port: int, daddr: IPAddr) -> tuple[str, int] | None:
    """Where a packet to daddr:host_port/protocol is DNATed: (pod address, container port), from
    the address-bound map first (as the rule order does), then the any-address one; None: no
    mapping.  `podnet trace` asks this."""
    f = daddr.version
    for name in (f"bound{f}", f"any{f}"):
        for parts, _, value in _mappings(name):
            if parts[-2:] != [protocol, host_port] or (name.startswith("bound") and str(parts[0]) != str(daddr)):
                continue
            target = value.get("concat", []) if isinstance(value, dict) else []
            if len(target) == 2:
                return str(target[0]), int(target[1])
    return None
