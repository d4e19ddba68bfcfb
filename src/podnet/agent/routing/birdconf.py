"""BIRD 2's configuration for one node, rendered from what the datastore says (a pure function:
the same view gives byte-for-byte the same text, so an unchanged cluster never reconfigures BIRD
and never touches a session).

What the node's BIRD does:
  exports exactly this node's pod CIDRs (a `static` protocol of blackhole routes, next hop set to
      the node's own address) to every BGP neighbour;
  learns the other nodes' CIDRs — and whatever external peers (a top-of-rack router) announce —
      into the kernel table BGP_TABLE, never the main table: the agent mirrors that table into
      the main table with podnet's route protocol (its reconcile loop owns every route there, as
      for host-gw, and refuses a next hop off the connected networks);
  peers: every other node (a full iBGP mesh), or — as soon as any node is a route reflector —
      clients peer only with the reflectors and reflectors with everyone (reflectors among
      themselves as ordinary iBGP peers); plus the external peers (eBGP, or iBGP if same AS);
  graceful restart on every session, so a BIRD that is restarted keeps its peers' routes.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

BGP_TABLE = 201          # the kernel table BIRD writes learned routes to; the agent mirrors it


@dataclass(frozen=True)
class Neighbour:
    name: str            # protocol name in BIRD (letters, digits, underscores)
    addr: str
    asn: int
    rr_client: bool = False
    password: str = ""
    external: bool = False


@dataclass(frozen=True)
class BirdView:
    router_id: str
    asn: int
    own_cidrs: tuple[str, ...]
    neighbours: tuple[Neighbour, ...]
    hold_time: int = 90
    keepalive_time: int = 0                    # 0: a third of the hold time
    graceful_restart_time: int = 120
    log_path: str = ""
    families: tuple[int, ...] = (4,)
    next_hop: dict[int, str] = field(default_factory=dict)     # family → this node's address for exports


def protocol_name(prefix: str, text: str) -> str:
    """A BIRD identifier for a node or peer name."""
    return prefix + "".join(c if c.isalnum() else "_" for c in text)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(v: BirdView) -> str:
    fams = [f for f in v.families if f in (4, 6)]
    keepalive = v.keepalive_time or max(1, v.hold_time // 3)
    lines = [
        "# Written by podnet's agent from the cluster datastore: edits are overwritten.",
        f"router id {v.router_id};",
        f"log {_quote(v.log_path)} {{ info, warning, error, fatal }};" if v.log_path else "log stderr { warning, error, fatal };",
        "protocol device { scan time 10; }",
    ]
    for fam in fams:
        ch = f"ipv{fam}"
        own = [c for c in v.own_cidrs if ipaddress.ip_network(c).version == fam]
        lines += [
            f"protocol kernel kernel{fam} {{",
            f"  kernel table {BGP_TABLE};       # learned routes only; the agent mirrors them into main",
            "  graceful restart;             # a restarted BIRD keeps these until it has relearned them",
            "  scan time 10;",
            f"  {ch} {{ import none; export where source = RTS_BGP; }};",
            "}",
            f"protocol static podnet_blocks{fam} {{",
            f"  {ch};",
            *(f"  route {c} blackhole;" for c in own),
            "}",
        ]
    lines += [
        "filter podnet_import {        # never a default route (the node's own stays), never our own CIDRs",
        "  if net.len = 0 then reject;",
        *(f"  if net = {c} then reject;" for c in v.own_cidrs),
        "  accept;",
        "}",
        "filter podnet_export {",
        *(f"  if proto = \"podnet_blocks{fam}\" then {{ bgp_next_hop = {v.next_hop[fam]}; accept; }}"
          for fam in fams if fam in v.next_hop),
        "  reject;",
        "}",
        "filter podnet_reflect {       # a route reflector passes on its clients' routes unchanged",
        *(f"  if proto = \"podnet_blocks{fam}\" then {{ bgp_next_hop = {v.next_hop[fam]}; accept; }}"
          for fam in fams if fam in v.next_hop),
        "  if source = RTS_BGP && !(bgp_path.len > 0) then accept;",
        "  reject;",
        "}",
        "template bgp podnet_peer {",
        f"  local as {v.asn};",
        f"  hold time {v.hold_time};",
        f"  keepalive time {keepalive};",
        "  connect delay time 0;          # BIRD waits 5 s before its first attempt otherwise",
        "  connect retry time 5;",
        "  error wait time 1, 30;",
        "  graceful restart on;",
        f"  graceful restart time {v.graceful_restart_time};",
        "}",
    ]
    for n in v.neighbours:
        export = "podnet_reflect" if any(x.rr_client for x in v.neighbours) and not n.external else "podnet_export"
        body = [f"  neighbor {n.addr} as {n.asn};", "  direct;"]      # peers share a link with this node
        if n.rr_client:
            body.append("  rr client;")
        if n.password:
            body.append(f"  password {_quote(n.password)};")
        fam = ipaddress.ip_address(n.addr).version
        if fam in fams:
            body.append(f"  ipv{fam} {{ import filter podnet_import; export filter {export}; }};")
        lines += [f"protocol bgp {n.name} from podnet_peer {{", *body, "}"]
    return "\n".join(lines) + "\n"
