"""What crossed the lab's fabric: every frame on the fabric namespace's wires, captured with a
packet socket while a block runs, then read as an eavesdropper on the underlay would.

`podnet demo --encryption wireguard` and the WireGuard tests use it to show that pod traffic
between nodes is only UDP to the WireGuard port: no marker string a pod sent, no pod address in
any IP header.  (One unbound AF_PACKET socket in the fabric namespace sees each frame on every
port of the fabric bridge — a frame forwarded from one node's wire to another's is seen twice,
which changes no verdict.)
"""
from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_TCP, IPPROTO_UDP = 6, 17
SO_RCVBUFFORCE = 33      # not in Python's socket module


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: int            # IP protocol number
    sport: int
    dport: int
    frame: bytes


@dataclass
class Capture:
    packets: list[Packet] = field(default_factory=list)
    frames: int = 0       # all frames, IP or not (ARP…)

    def between(self, addrs: Iterable[str]) -> list[Packet]:
        """IP packets whose source and destination are both in `addrs` (node to node)."""
        s = set(addrs)
        return [p for p in self.packets if p.src in s and p.dst in s]

    def carrying(self, marker: bytes) -> list[Packet]:
        return [p for p in self.packets if marker in p.frame]

    def with_address_in(self, nets: Iterable[str]) -> list[Packet]:
        """Packets whose IP header names an address inside `nets` (e.g. the pod CIDRs)."""
        ns = [ipaddress.ip_network(n) for n in nets]
        return [p for p in self.packets
                if any(ipaddress.ip_address(a) in n for a in (p.src, p.dst) for n in ns
                       if ipaddress.ip_address(a).version == n.version)]


def parse(frame: bytes) -> Packet | None:
    """An Ethernet frame's IPv4/IPv6 header and ports (None for anything else)."""
    if len(frame) < 14:
        return None
    eth_type = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if eth_type == ETH_P_IP and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        proto, src, dst = ip[9], socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        l4 = ip[ihl:]
    elif eth_type == ETH_P_IPV6 and len(ip) >= 40:
        proto = ip[6]
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        l4 = ip[40:]
    else:
        return None
    sport = dport = 0
    if proto in (IPPROTO_TCP, IPPROTO_UDP) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
    return Packet(src, dst, proto, sport, dport, frame)


@contextlib.contextmanager
def capturing(netns_path: str) -> Iterator[Capture]:
    """Capture every frame in the namespace at `netns_path` while the block runs."""
    from ..net import netns
    with netns.opened(netns_path) as fd, netns.entered(fd):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)     # root: past rmem_max
    cap = Capture()
    stop = threading.Event()
    stopped = [0.0]

    def read() -> None:
        while True:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if stop.is_set() and (not ready or time.monotonic() - stopped[0] > 2.0):
                return
            if not ready:
                continue
            frame = sock.recv(65536)
            cap.frames += 1
            pkt = parse(frame)
            if pkt is not None:
                cap.packets.append(pkt)
    reader = threading.Thread(target=read, name="podnet-lab-capture", daemon=True)
    reader.start()
    try:
        yield cap
    finally:
        stopped[0] = time.monotonic()
        stop.set()          # the reader drains what is queued (at most 2 s more), then stops
        reader.join(10)
        sock.close()


@dataclass
class EncryptionVerdict:
    """What an eavesdropper on the fabric saw while pods talked across nodes."""
    node_packets: int                  # IP packets between node addresses
    not_wireguard: list[Packet]        # … of them, anything but UDP to/from the WireGuard port
    marker_seen: list[Packet]          # frames carrying the marker a pod sent
    pod_addressed: list[Packet]        # IP headers naming a pod address
    frames: int
    control: int = 0                   # node-to-node control sessions left aside (BGP's TCP 179)

    @property
    def clean(self) -> bool:
        return self.node_packets > 0 and not (self.not_wireguard or self.marker_seen or self.pod_addressed)

    def describe(self) -> str:
        control = f" (and {self.control} of the nodes' BGP sessions, TCP 179)" if self.control else ""
        lines = [f"fabric capture: {self.frames} frames, {self.node_packets} IP packets between nodes{control}; "
                 f"not WireGuard: {len(self.not_wireguard)}; carrying the marker: {len(self.marker_seen)}; "
                 f"with a pod address in the IP header: {len(self.pod_addressed)}"]
        for p in (self.not_wireguard + self.marker_seen + self.pod_addressed)[:10]:
            lines.append(f"  {p.src}:{p.sport} -> {p.dst}:{p.dport} proto {p.proto} ({len(p.frame)} bytes)")
        return "\n".join(lines)


def judge(cap: Capture, node_addrs: Iterable[str], pod_cidrs: Iterable[str], marker: bytes,
          wg_port: int, control_ports: tuple[int, ...] = ()) -> EncryptionVerdict:
    """control_ports: TCP ports of the nodes' own control sessions (BGP: 179) — not pod traffic,
    counted apart (the marker and pod-address checks still cover them)."""
    between = cap.between(node_addrs)
    control = [p for p in between if p.proto == IPPROTO_TCP and {p.sport, p.dport} & set(control_ports)]
    return EncryptionVerdict(
        node_packets=len(between) - len(control),
        not_wireguard=[p for p in between if not (p.proto == IPPROTO_UDP and wg_port in (p.sport, p.dport))
                       and p not in control],
        marker_seen=cap.carrying(marker), pod_addressed=cap.with_address_in(pod_cidrs), frames=cap.frames,
        control=len(control))


def send_marker(src_netns: str, dst_netns: str, dst_ip: str, marker: bytes, port: int = 7777,
                timeout: float = 5.0) -> tuple[bool, bool]:
    """The marker from one pod to another over UDP and over TCP; (UDP arrived, TCP arrived) —
    proof the traffic the capture saw encrypted really was delivered."""
    from ..net import netns
    fam = socket.AF_INET6 if ipaddress.ip_address(dst_ip).version == 6 else socket.AF_INET
    with netns.opened(dst_netns) as fd, netns.entered(fd):
        u = socket.socket(fam, socket.SOCK_DGRAM)
        t = socket.socket(fam, socket.SOCK_STREAM)
    with u, t:
        u.bind((dst_ip, port))
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((dst_ip, port))
        t.listen(4)
        with netns.opened(src_netns) as fd, netns.entered(fd):
            tx = socket.socket(fam, socket.SOCK_STREAM)
            tx.settimeout(timeout)
            ux = socket.socket(fam, socket.SOCK_DGRAM)
        with tx, ux:
            deadline = time.monotonic() + timeout
            udp_ok = False
            while not udp_ok and time.monotonic() < deadline:      # UDP may be lost: send until it arrives
                ux.sendto(marker, (dst_ip, port))
                if select.select([u], [], [], 0.5)[0]:
                    udp_ok = marker in u.recv(65536)
            tx.connect((dst_ip, port))
            tx.sendall(marker)
            t.settimeout(timeout)
            conn, _ = t.accept()
            with conn:
                conn.settimeout(timeout)
                got = b""
                while len(got) < len(marker):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
    return udp_ok, got == marker
