"""Reachability probes run from inside a netns: ICMP echo and TCP connect (stdlib sockets)."""
from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time

from . import netns


def readable(sock: socket.socket, timeout: float) -> bool:
    """Wait until `sock` has data, at most `timeout` s.  poll(), not select(): select() refuses
    descriptors above 1023, which a process probing a thousand pods (the demo) goes past."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(max(0.0, timeout) * 1000))


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def _ping_here(dst: str, timeout: float, size: int) -> bool:
    ip = ipaddress.ip_address(dst)
    v6 = ip.version == 6
    fam, proto, etype = (socket.AF_INET6, socket.IPPROTO_ICMPV6, 128) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP, 8)
    ident = os.getpid() & 0xFFFF
    payload = os.urandom(max(size, 8))
    with socket.socket(fam, socket.SOCK_RAW, proto) as s:
        hdr = struct.pack("!BBHHH", etype, 0, 0, ident, 1)
        csum = 0 if v6 else icmp_checksum(hdr + payload)  # the kernel fills ICMPv6's
        s.sendto(struct.pack("!BBHHH", etype, 0, csum, ident, 1) + payload, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not readable(s, left):
                return False
            data, addr = s.recvfrom(65535)
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
            if addr[0] == dst and icmp[0] == (129 if v6 else 0) and icmp[8:] == payload:
                return True
    return False


def ping(netns_path: str, dst: str, timeout: float = 2.0, size: int = 56, tries: int = 3) -> bool:
    """True when `dst` answers an ICMP echo sent from inside `netns_path`."""
    with netns.opened(netns_path) as fd, netns.entered(fd):
        return any(_ping_here(dst, timeout / tries, size) for _ in range(tries))


def udp_send(netns_path: str, dst: str, port: int, payload: bytes = b"podnet-probe") -> None:
    """One UDP datagram from inside `netns_path` (no answer expected)."""
    fam = socket.AF_INET6 if ipaddress.ip_address(dst).version == 6 else socket.AF_INET
    with netns.opened(netns_path) as fd, netns.entered(fd), socket.socket(fam, socket.SOCK_DGRAM) as u:
        u.sendto(payload, (dst, port))


def tcp_connect(netns_path: str, dst: str, port: int, timeout: float = 2.0) -> bool:
    with netns.opened(netns_path) as fd, netns.entered(fd):
        try:
            with socket.create_connection((dst, port), timeout=timeout):
                return True
        except OSError:
            return False
