"""One DHCP exchange on a pod's interface, from inside its network namespace.

The transport is a raw packet socket on the pod's interface (net/packet.py); messages are retransmitted with backoff
(1, 2, 4 … s, RFC 2131 §4.1) until an answer or the deadline.  Nothing here keeps state:
the lease keeper decides when to renew, rebind or release."""
from __future__ import annotations

import functools
import random
import socket
import time
from collections.abc import Callable

from ..net.packet import link_socket as pod_socket
from ..net.probe import readable
from . import packets
from .packets import Reply


class NoAnswer(Exception):
    """No DHCP server answered within the deadline."""


class Refused(Exception):
    """The server said NAK."""


def exchange(sock: socket.socket, build: Callable[[int], bytes], deadline: float,
             want: tuple[str, ...] = ("ACK", "NAK")) -> Reply:
    """Send build(xid), retransmitting with backoff, until a reply of a wanted kind or the deadline."""
    xid = random.getrandbits(32)
    frame = build(xid)
    backoff = 1.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise NoAnswer()
        sock.send(frame)
        resend_at = min(deadline, now + backoff + random.uniform(-0.1, 0.1) * backoff)
        backoff = min(backoff * 2, 8.0)
        while True:
            left = resend_at - time.monotonic()
            if left <= 0:
                break
            if not readable(sock, left):
                break
            reply = packets.parse(sock.recv(4096), xid)
            if reply is not None and reply.kind in want:
                return reply


def acquire(netns_path: str, ifname: str, client_id: bytes, provide: list[tuple[int, bytes]],
            request: tuple[int, ...], timeout: float) -> tuple[Reply, str]:
    """DISCOVER → OFFER → REQUEST → ACK; a NAK starts over with a fresh DISCOVER.  (ACK, mac)."""
    deadline = time.monotonic() + timeout
    with pod_socket(netns_path, ifname) as (sock, mac):
        while True:
            offer = exchange(sock, lambda x: packets.discover(mac, x, client_id, provide, request), deadline,
                             ("OFFER",))
            ack = exchange(sock, functools.partial(packets.request_offer, mac, client_id=client_id, offer=offer,
                                                   provide=provide, request=request),
                           deadline)
            if ack.kind == "ACK":
                return ack, mac


def renew(netns_path: str, ifname: str, client_id: bytes, ip: str, server_ip: str, server_mac: str,
          provide: list[tuple[int, bytes]], request: tuple[int, ...], timeout: float, rebind: bool) -> Reply:
    with pod_socket(netns_path, ifname, bring_up=False) as (sock, mac):
        reply = exchange(sock, lambda x: packets.request_renew(mac, x, client_id, ip, server_ip, server_mac,
                                                                provide, request, rebind),
                         time.monotonic() + timeout)
    if reply.kind == "NAK":
        raise Refused(f"{server_ip} refused to extend {ip}")
    return reply


def release(netns_path: str, ifname: str, client_id: bytes, ip: str, server_ip: str, server_mac: str) -> None:
    """DHCPRELEASE: no answer comes (RFC 2131 §4.4.6); sent twice, as it may be lost."""
    with pod_socket(netns_path, ifname, bring_up=False) as (sock, mac):
        for _ in range(2):
            sock.send(packets.release(mac, random.getrandbits(32), client_id, ip, server_ip, server_mac))
