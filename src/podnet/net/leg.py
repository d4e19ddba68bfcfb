"""An underlay pod's leg to its own node: a veth pair beside the pod's macvlan/ipvlan eth0.

A macvlan (or ipvlan) child cannot talk to its parent, so without a leg the node — kubelet's
probes, hostNetwork pods — and every ClusterIP (kube-proxy's rules live in the node) are out of
the pod's reach.  The leg is unnumbered (the unnumbered-ptp idea): no address of its own in the pod.

  node   the host end holds a link-local gateway (169.254.1.1/32, fe80::1/64 — the same on every
         leg, never routed) and a /32 (/128) route to each of the pod's addresses, source the
         node's own address, so the node reaches the pod through its leg
  pod    `gateway dev leg scope link`, then each routed destination (the node's addresses, the
         service CIDR, …) `via gateway dev leg src <pod address>`; everything else keeps using eth0
  reply  a connection that came in through the leg (a Service's client, a hostPort's, a probe)
         is answered through it too: its first packet marks the connection (nftables, table
         `inet podnet_leg` in the pod), the mark selects a routing table whose default route is
         the leg.  Without it the pod would answer a ClusterIP client straight over eth0, around
         the node's conntrack, and the client would drop the answer.  No NAT anywhere: the pod
         sees its clients' own addresses, so NetworkPolicy can judge them.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from . import netns, nft
from .errors import NetError
from .rtnl import RT_SCOPE_LINK, Link, Rtnl

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

GATEWAY: dict[int, IPAddr] = {4: ipaddress.IPv4Address("169.254.1.1"), 6: ipaddress.IPv6Address("fe80::1")}
HOST_PREFIX = "pnl"              # every leg's host end: pnl + 8 hex digits (the node's rules match it)
# Marks are single bits, set with `|` and matched under their own mask, so they never disturb (or
# take) another's bits: kube-proxy masquerades what carries 0x4000 and drops 0x8000, Cilium and
# Weave use bits 8-11 and 17.
REPLY_MARK = 0x100000            # connections that came in through the leg (in the pod)
REPLY_TABLE = 0x4C4547           # their answers' routing table ("LEG")
RULE_PRIORITY = 1000
NFT_TABLE = "inet podnet_leg"


def _gateway_iface(family: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(f"{GATEWAY[family]}/{32 if family == 4 else 64}")


def host_side(host: Rtnl, hv: Link, pod_ips: Iterable[IPAddr], node_ips: dict[int, IPAddr]) -> None:
    """The node's end: the gateway address and a route to each pod address (source: the node's)."""
    ips = list(pod_ips)
    for fam in sorted({ip.version for ip in ips}):
        host.add_addr(hv.index, _gateway_iface(fam), nodad=True)
    for ip in ips:
        host.add_route(ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}"), oif=hv.index, scope=RT_SCOPE_LINK,
                       src=node_ips.get(ip.version), replace=True)


def pod_side(pod: Rtnl, pod_fd: int, cv: Link, pod_ips: Iterable[IPAddr], routed: Iterable[IPNet]) -> None:
    """The pod's end: the link-local gateway on it, the routed destinations through it (source the
    pod's own address), and answers to connections that came in through it sent back the same way."""
    by_family = {ip.version: ip for ip in pod_ips}
    if not cv.up:
        pod.set_link(cv.index, state="up")
    for fam, src in sorted(by_family.items()):
        gw = GATEWAY[fam]
        if fam == 4:
            pod.add_route(ipaddress.ip_network(f"{gw}/32"), oif=cv.index, scope=RT_SCOPE_LINK, src=src)
        pod.add_route(ipaddress.ip_network("0.0.0.0/0" if fam == 4 else "::/0"), gw=gw, oif=cv.index,
                      table=REPLY_TABLE, src=src, onlink=fam == 4)
        pod.fwmark_rule("add", fam, REPLY_MARK, REPLY_TABLE, RULE_PRIORITY)
    for dst in routed:
        if dst.version in by_family:
            pod.add_route(dst, gw=GATEWAY[dst.version], oif=cv.index, src=by_family[dst.version], replace=True,
                          onlink=dst.version == 4)
    with netns.entered(pod_fd):
        nft.run(reply_marks_script(cv.name))


def reply_marks_script(leg: str) -> str:
    """The pod's table marking connections that arrive through the leg (`leg` is a checked link name)."""
    return "\n".join([
        # add + flush, not delete + add: a table's deletion costs the transaction a kernel grace
        # period (~10 ms), and the pod's netns is new
        f"add table {NFT_TABLE}", f"flush table {NFT_TABLE}",
        f"add chain {NFT_TABLE} prerouting {{ type filter hook prerouting priority mangle; policy accept; }}",
        f"add rule {NFT_TABLE} prerouting iifname \"{leg}\" ct state new ct mark set ct mark | {REPLY_MARK:#x}",
        f"add chain {NFT_TABLE} output {{ type route hook output priority mangle; policy accept; }}",
        f"add rule {NFT_TABLE} output ct mark & {REPLY_MARK:#x} == {REPLY_MARK:#x} meta mark set meta mark | {REPLY_MARK:#x}",
    ]) + "\n"


def remove_pod_side(pod: Rtnl, pod_fd: int) -> None:
    """The reply routing (rules, table) goes; the leg's own routes go with the link."""
    for fam in (4, 6):
        try:
            pod.fwmark_rule("del", fam, REPLY_MARK, REPLY_TABLE, RULE_PRIORITY)
        except NetError:
            pass
    with netns.entered(pod_fd):
        nft.run_ignoring_missing(f"delete table {NFT_TABLE}\n")


# ------------------------------------------------------------------ the node's side of every leg
NODE_TABLE = "inet podnet_underlay"
FORWARD_MARK = 0x200000          # a packet the node forwards from one of its pods' legs (one bit, as above)
FORWARD_TABLE = 0x4C4546         # … routed by this table first: other nodes' blocks via their node ("LEF")


def node_script(pools: Iterable[IPNet]) -> str:
    """The node's table for its legs, in one transaction (replacing what was there):
      - a packet arriving from a leg is marked, so it is routed by FORWARD_TABLE first: a Service
        client's packet, DNATed here to a pod on another node, goes to that pod *through its node*
        (and the answer comes back the same way, so this node's conntrack turns it back into the
        Service's address) — the client keeps its address, policy can judge it;
      - a packet from a leg DNATed to something that is not a pod (a hostNetwork backend, the API
        server) is masqueraded: that peer would answer the pod straight over the datacenter network."""
    lines = [f"add table {NODE_TABLE}", f"delete table {NODE_TABLE}", f"add table {NODE_TABLE}",
             f"add set {NODE_TABLE} pods4 {{ type ipv4_addr; flags interval; }}",
             f"add set {NODE_TABLE} pods6 {{ type ipv6_addr; flags interval; }}",
             f"add chain {NODE_TABLE} prerouting {{ type filter hook prerouting priority mangle; policy accept; }}",
             f"add rule {NODE_TABLE} prerouting iifname \"{HOST_PREFIX}*\" meta mark set meta mark | {FORWARD_MARK:#x}",
             f"add chain {NODE_TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",
             f"add rule {NODE_TABLE} postrouting iifname \"{HOST_PREFIX}*\" ct status dnat ip daddr != @pods4 masquerade",
             f"add rule {NODE_TABLE} postrouting iifname \"{HOST_PREFIX}*\" ct status dnat ip6 daddr != @pods6 masquerade"]
    for fam in (4, 6):
        nets = sorted(str(p) for p in pools if p.version == fam)
        if nets:
            lines.append(f"add element {NODE_TABLE} pods{fam} {{ {', '.join(nets)} }}")
    return "\n".join(lines) + "\n"


def has_reply_routing(pod_fd: int) -> bool:
    with netns.entered(pod_fd):
        return bool(nft.list_json(f"table {NFT_TABLE}"))
