"""DHCPv4 messages (RFC 2131/2132/3442) built and parsed with scapy — the only module that
imports it (pinned in pyproject: scapy==2.8.0; ~0.4 s to import, so only the agent pays, on
the first DHCP request).  Frames are whole Ethernet frames: the pod's interface has no
address while the exchange runs, so they go out on a raw packet socket."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
KINDS = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}


@dataclass
class Reply:
    kind: str                          # OFFER, ACK, NAK
    xid: int
    yiaddr: str
    server_id: str
    server_mac: str
    mask: str = ""
    routers: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: str = ""
    lease_time: int = 0
    t1: int = 0
    t2: int = 0
    classless: list[tuple[str, str]] = field(default_factory=list)   # (dst cidr, gw)
    static: list[tuple[str, str]] = field(default_factory=list)      # option 33: (classful dst, gw)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _options(kind: str, client_id: bytes, extra: list[tuple[Any, Any]], request: tuple[int, ...]) -> list[Any]:
    return [("message-type", kind), ("client_id", client_id), *extra, ("param_req_list", list(request)), "end"]


def discover(mac: str, xid: int, client_id: bytes, provide: list[tuple[int, bytes]], request: tuple[int, ...]) -> bytes:
    dhcp = DHCP(options=_options("discover", client_id, list(provide), request))
    return bytes(Ether(src=mac, dst=BROADCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255") /
                 UDP(sport=68, dport=67) / BOOTP(chaddr=_mac_bytes(mac), xid=xid, flags=0x8000) / dhcp)


def request_offer(mac: str, xid: int, client_id: bytes, offer: Reply, provide: list[tuple[int, bytes]],
                  request: tuple[int, ...]) -> bytes:
    """SELECTING: broadcast, the offered address and the chosen server named in options."""
    extra = [("requested_addr", offer.yiaddr), ("server_id", offer.server_id), *provide]
    dhcp = DHCP(options=_options("request", client_id, extra, request))
    return bytes(Ether(src=mac, dst=BROADCAST_MAC) / IP(src="0.0.0.0", dst="255.255.255.255") /
                 UDP(sport=68, dport=67) / BOOTP(chaddr=_mac_bytes(mac), xid=xid, flags=0x8000) / dhcp)


def request_renew(mac: str, xid: int, client_id: bytes, ip: str, server_ip: str, server_mac: str,
                  provide: list[tuple[int, bytes]], request: tuple[int, ...], rebind: bool = False) -> bytes:
    """RENEWING (unicast to the server that leased it) or REBINDING (broadcast, to any server):
    ciaddr set, no server identifier, no requested address."""
    dhcp = DHCP(options=_options("request", client_id, list(provide), request))
    dst_mac, dst_ip = (BROADCAST_MAC, "255.255.255.255") if rebind else (server_mac, server_ip)
    return bytes(Ether(src=mac, dst=dst_mac) / IP(src=ip, dst=dst_ip) / UDP(sport=68, dport=67) /
                 BOOTP(chaddr=_mac_bytes(mac), xid=xid, ciaddr=ip) / dhcp)


def release(mac: str, xid: int, client_id: bytes, ip: str, server_ip: str, server_mac: str) -> bytes:
    dhcp = DHCP(options=[("message-type", "release"), ("client_id", client_id), ("server_id", server_ip), "end"])
    return bytes(Ether(src=mac, dst=server_mac) / IP(src=ip, dst=server_ip) / UDP(sport=68, dport=67) /
                 BOOTP(chaddr=_mac_bytes(mac), xid=xid, ciaddr=ip) / dhcp)


def parse(frame: bytes, xid: int) -> Reply | None:
    """A server's reply to transaction `xid`, or None for any other frame."""
    try:
        pkt = Ether(frame)
    except Exception:  # noqa: BLE001 - not a frame scapy understands: not ours
        return None
    if BOOTP not in pkt or DHCP not in pkt or UDP not in pkt or pkt[UDP].dport != 68:
        return None
    boot = pkt[BOOTP]
    if boot.op != 2 or boot.xid != xid:
        return None
    opts: dict[str, Any] = {}
    for o in pkt[DHCP].options:
        if isinstance(o, tuple) and len(o) >= 2:
            opts[str(o[0])] = list(o[1:]) if len(o) > 2 else o[1]
    kind = KINDS.get(int(opts.get("message-type", 0)), "")
    if kind not in ("OFFER", "ACK", "NAK"):
        return None

    def many(key: str) -> list[str]:
        v = opts.get(key)
        return [] if v is None else [str(x) for x in (v if isinstance(v, list) else [v])]
    r = Reply(kind, xid, str(boot.yiaddr), str(opts.get("server_id", pkt[IP].src)), str(pkt[Ether].src),
              str(opts.get("subnet_mask", "")), many("router"), many("name_server"),
              _text(opts.get("domain", "")), int(opts.get("lease_time", 0) or 0),
              int(opts.get("renewal_time", 0) or 0), int(opts.get("rebinding_time", 0) or 0))
    for item in many("classless_static_routes"):      # scapy: "10.50.0.0/16:192.168.77.1"
        dst, _, gw = item.partition(":")
        r.classless.append((str(ipaddress.ip_network(dst, strict=False)), gw))
    static = many("static-routes")
    for dst, gw in zip(static[0::2], static[1::2], strict=False):  # an odd trailing item is ignored
        r.static.append((dst, gw))
    return r


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.rstrip(b"\0").decode(errors="replace")
    return str(v or "")
