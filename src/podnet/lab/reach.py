"""Reachability at scale: thousands of (source netns, destination address) pairs checked at once,
ICMP echo and a TCP handshake each, from one thread and one epoll.

A socket belongs to the netns it was created in, whatever thread uses it later; so the thread
enters each source's netns only to create that source's sockets — one raw ICMP socket per family
(every echo of that source goes out of it, told apart by ident and sequence) and one non-blocking
TCP socket per pair — and then waits on all of them together.  There is no select(): epoll has no
descriptor ceiling (the sequential prober this replaces broke past fd 1024 at scale), and pairs
go in chunks so the descriptors in flight stay bounded.

A pair that fails is tried once more with a longer timeout, so an overloaded machine makes the
check slower but never reports a working path as broken; nothing turns a broken one into working.
"""
from __future__ import annotations

import ipaddress
import os
import selectors
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..net import netns
from ..net.probe import icmp_checksum

Pair = tuple[str, str]          # (source netns path, destination address)
ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
RCVBUF = 4 << 20                # room for a thousand echo replies arriving at once


@dataclass
class Verdict:
    icmp: bool = False
    tcp: bool = False           # stays False when no TCP port was asked for


def _echo(family: int, ident: int, seq: int) -> bytes:
    payload = b"podnet-reach" + struct.pack("!I", seq)
    hdr = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq & 0xFFFF)
    if family == 6:             # the kernel fills in ICMPv6's checksum
        return hdr + payload
    return struct.pack("!BBHHH", 8, 0, icmp_checksum(hdr + payload), ident, seq & 0xFFFF) + payload


def _raw_socket(family: int) -> socket.socket:
    fam, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if family == 6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    s = socket.socket(fam, socket.SOCK_RAW, proto)
    s.setblocking(False)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)     # SO_RCVBUFFORCE (root): past rmem_max
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    return s


class _Source:
    """One source netns's sockets for a chunk: raw ICMP per family and a TCP socket per pair."""

    def __init__(self) -> None:
        self.raw: dict[int, socket.socket] = {}
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.echo_seq: dict[int, str] = {}          # seq → destination


def _run_chunk(pairs: list[Pair], port: int | None, timeout: float, out: dict[Pair, Verdict]) -> None:
    sel = selectors.DefaultSelector()
    tcp_pending: dict[socket.socket, Pair] = {}
    icmp_pending: set[Pair] = set()
    sources: dict[str, _Source] = {}
    by_src: dict[str, list[str]] = {}
    for src, dst in pairs:
        by_src.setdefault(src, []).append(dst)
        out.setdefault((src, dst), Verdict())
    try:
        for src, dsts in by_src.items():
            st = sources[src] = _Source()
            with netns.opened(src) as fd, netns.entered(fd):
                for seq, dst in enumerate(dsts):
                    fam = ipaddress.ip_address(dst).version
                    if fam not in st.raw:
                        st.raw[fam] = _raw_socket(fam)
                        sel.register(st.raw[fam], selectors.EVENT_READ, (src, fam))
                    st.echo_seq[seq] = dst
                    try:
                        st.raw[fam].sendto(_echo(fam, st.ident, seq), (dst, 0))
                        icmp_pending.add((src, dst))
                    except OSError:
                        pass            # no route: the verdict stays False
                    if port is None:
                        continue
                    t = socket.socket(socket.AF_INET6 if fam == 6 else socket.AF_INET, socket.SOCK_STREAM)
                    t.setblocking(False)
                    if t.connect_ex((dst, port)) not in (0, 115):      # 115: EINPROGRESS
                        t.close()
                        continue
                    sel.register(t, selectors.EVENT_WRITE, None)
                    tcp_pending[t] = (src, dst)
        deadline = time.monotonic() + timeout
        while (tcp_pending or icmp_pending) and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is None:                                   # a TCP handshake finished
                    pair = tcp_pending.pop(sock)
                    out[pair].tcp = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    sel.unregister(sock)
                    sock.close()
                    continue
                src, fam = key.data
                _read_replies(sock, fam, sources[src], src, icmp_pending, out)
    finally:
        for t in tcp_pending:
            t.close()
        for st in sources.values():
            for r in st.raw.values():
                r.close()
        sel.close()


def _read_replies(sock: socket.socket, fam: int, st: _Source, src: str, pending: set[Pair],
                  out: dict[Pair, Verdict]) -> None:
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            return
        icmp = data[(data[0] & 0x0F) * 4:] if fam == 4 else data   # v4 raw sockets see the IP header
        if len(icmp) < 8 or icmp[0] != ECHO_REPLY[fam]:
            continue
        ident, seq = struct.unpack("!HH", icmp[4:8])
        dst = st.echo_seq.get(seq)
        if ident != st.ident or dst is None or ipaddress.ip_address(addr[0]) != ipaddress.ip_address(dst):
            continue                    # another source's echo, or a stray
        out[(src, dst)].icmp = True
        pending.discard((src, dst))


def check(pairs: Iterable[Pair], port: int | None = None, timeout: float = 1.5, retry_timeout: float = 4.0,
          chunk: int = 1500) -> dict[Pair, Verdict]:
    """{(source netns, destination): Verdict} for every pair: ICMP echo answered, and (with a
    port) TCP handshake completed.  Failed pairs are tried once more with retry_timeout."""
    todo = list(dict.fromkeys(pairs))
    out: dict[Pair, Verdict] = {}
    for i in range(0, len(todo), chunk):
        _run_chunk(todo[i:i + chunk], port, timeout, out)
    failed = [p for p in todo if not out[p].icmp or (port is not None and not out[p].tcp)]
    if failed:
        again: dict[Pair, Verdict] = {}
        for i in range(0, len(failed), chunk):
            _run_chunk(failed[i:i + chunk], port, retry_timeout, again)
        for p, v in again.items():
            out[p].icmp = out[p].icmp or v.icmp
            out[p].tcp = out[p].tcp or v.tcp
    return out


@dataclass(frozen=True)
class Plan:
    """Which pod pairs a cluster check probes, and in words what that covers."""
    pairs: list[tuple[int, int]]        # (source pod index, destination pod index)
    node_pairs: list[tuple[int, int]]   # (source node, destination node), both ways
    what: list[str]


def plan(pod_nodes: list[int], nodes: int, sample: int = 2000, seed: int = 1, all_pairs_up_to: int = 60) -> Plan:
    """Small clusters: every pod pair.  Large ones (a million pairs at 1000 pods): every pod from
    one pod on each node (the first; its own node's pods too), every node pair both ways, and a
    seeded random sample of pod pairs — every pod, every node pair and a spread of paths."""
    import random
    n = len(pod_nodes)
    node_pairs = [(a, b) for a in range(nodes) for b in range(nodes) if a != b]
    if n <= all_pairs_up_to:
        pairs = [(s, d) for s in range(n) for d in range(n) if s != d]
        return Plan(pairs, node_pairs, [f"every pod pair ({len(pairs)})", f"every node pair both ways ({len(node_pairs)})"])
    first: dict[int, int] = {}
    for i, node in enumerate(pod_nodes):
        first.setdefault(node, i)
    reps = sorted(first.values())
    every = [(r, d) for r in reps for d in range(n) if d != r]
    rng = random.Random(seed)
    seen = set(every)
    drawn: list[tuple[int, int]] = []
    while len(drawn) < min(sample, n * (n - 1) - len(seen)):
        s, d = rng.randrange(n), rng.randrange(n)
        if s != d and (s, d) not in seen:
            seen.add((s, d))
            drawn.append((s, d))
    return Plan(every + drawn, node_pairs,
                [f"every pod from the first pod of each node ({len(every)} pairs)",
                 f"every node pair both ways ({len(node_pairs)})",
                 f"{len(drawn)} random pod pairs (seed {seed})"])
