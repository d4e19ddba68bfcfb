"""Is traffic still flowing while something is being restarted?  Two measures of continuity
between pods, each a thread from the moment it starts until it is stopped:

  Pinger   an ICMP echo every `interval` from one netns to an address: sent, answered, lost,
           and the longest stretch without an answer (the gap a user's traffic would see)
  Stream   one long TCP connection from one pod to another, a chunk every `interval`: whether
           it survived (no reset, every byte in order) and its longest pause in delivery

Used by the WireGuard tests and numbers (agent restarts, wireguard-go killed, key rotation).
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from ..net import netns
from ..net.probe import icmp_checksum

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)     # Linux: the kernel's receive time as a timespec


@dataclass
class Continuity:
    sent: int = 0
    answered: int = 0
    longest_gap: float = 0.0      # seconds between two consecutive answers (or deliveries)
    error: str = ""

    @property
    def lost(self) -> int:
        return self.sent - self.answered


class Pinger:
    """ICMP echo from `netns_path` to `dst` (IPv4) every `interval` s; an echo not answered
    within `timeout` counts as lost.

    "Answered within" is judged by the kernel's receive timestamp of the reply (SO_TIMESTAMPNS),
    not by when this thread gets to read it: on a busy machine (the tests that run this under a
    CPU hog) the measuring thread itself may be late by seconds, and must not count the network's
    answers as lost for its own lateness.  Every reply waiting in the socket is read each turn."""

    def __init__(self, netns_path: str, dst: str, interval: float = 0.02, timeout: float = 1.0) -> None:
        self.dst, self.interval, self.timeout = dst, interval, timeout
        with netns.opened(netns_path) as fd, netns.entered(fd):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.result = Continuity()
        self._stop = threading.Event()
        self._sent_at: dict[int, float] = {}
        self._last_answer = 0.0
        self._ident = (os.getpid() ^ id(self)) & 0xFFFF
        self._thread = threading.Thread(target=self._run, name="podnet-lab-pinger", daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> Continuity:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            self.sock.close()
        return self.result

    def _run(self) -> None:
        seq = 0
        next_send = time.monotonic()
        stop_at = 0.0
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                stop_at = stop_at or now
                if not self._sent_at or now - stop_at > self.timeout:    # last echoes get their timeout
                    break
            elif now >= next_send:
                seq = (seq + 1) & 0xFFFF
                hdr = struct.pack("!BBHHH", 8, 0, 0, self._ident, seq)
                sent_wall = time.time()                    # the reply's kernel timestamp is wall-clock
                body = struct.pack("!d", sent_wall)
                pkt = struct.pack("!BBHHH", 8, 0, icmp_checksum(hdr + body), self._ident, seq) + body
                try:
                    self.sock.sendto(pkt, (self.dst, 0))
                except OSError:
                    pass                                   # e.g. unreachable for a moment: counted lost
                self._sent_at[seq] = sent_wall
                self.result.sent += 1
                next_send += self.interval
            wait = max(0.0, min(next_send - time.monotonic(), 0.05))
            if select.select([self.sock], [], [], wait)[0]:
                self._read_replies()
            cutoff = time.time() - self.timeout
            for s in [s for s, t in self._sent_at.items() if t < cutoff]:
                self._sent_at.pop(s)                       # lost: every reply that had arrived was read above

    def _read_replies(self) -> None:
        """Every reply waiting in the socket, each judged by its kernel receive time."""
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            arrived = time.time()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    arrived = sec + nsec / 1e9
            icmp = data[(data[0] & 0x0F) * 4:]
            if len(icmp) < 8 or icmp[0] != 0:
                continue
            ident, got = struct.unpack("!HH", icmp[4:8])
            sent = self._sent_at.get(got)
            if ident != self._ident or sent is None or arrived - sent > self.timeout:
                continue
            self._sent_at.pop(got)
            self.result.answered += 1
            if self._last_answer:
                self.result.longest_gap = max(self.result.longest_gap, arrived - self._last_answer)
            self._last_answer = max(self._last_answer, arrived)


class Stream:
    """One TCP connection src → dst:port, a chunk every `interval` s, received in the
    destination pod; `result.error` names how it broke if it did."""

    CHUNK = 1024

    def __init__(self, src_netns: str, dst_netns: str, dst: str, port: int = 7788, interval: float = 0.01) -> None:
        self.interval = interval
        with netns.opened(dst_netns) as fd, netns.entered(fd):
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((dst, port))
        self.listener.listen(1)
        with netns.opened(src_netns) as fd, netns.entered(fd):
            self.client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.client.settimeout(10)
        self.client.connect((dst, port))
        self.conn, _ = self.listener.accept()
        self.result = Continuity()
        self._received = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True), threading.Thread(target=self._recv, daemon=True)]

    def __enter__(self) -> Stream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> Continuity:
        if not self._stop.is_set():
            self._stop.set()
            self._threads[0].join(15)
            try:
                self.client.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._threads[1].join(30)
            for s in (self.client, self.conn, self.listener):
                s.close()
            if not self.result.error and self._received != self.result.sent * self.CHUNK:
                self.result.error = f"{self.result.sent * self.CHUNK - self._received} bytes never arrived"
            self.result.answered = self._received // self.CHUNK
        return self.result

    def _send(self) -> None:
        seq = 0
        while not self._stop.wait(self.interval):
            chunk = struct.pack("!I", seq).ljust(self.CHUNK, b"s")
            try:
                self.client.sendall(chunk)
            except OSError as e:
                self.result.error = f"send: {e}"
                return
            seq += 1
            self.result.sent += 1

    def _recv(self) -> None:
        last = 0.0
        expect = 0
        buf = b""
        self.conn.settimeout(60)
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError as e:
                self.result.error = self.result.error or f"recv: {e}"
                return
            if not data:
                return
            now = time.monotonic()
            if last:
                self.result.longest_gap = max(self.result.longest_gap, now - last)
            last = now
            self._received += len(data)
            buf += data
            while len(buf) >= self.CHUNK:
                if struct.unpack("!I", buf[:4])[0] != expect:
                    self.result.error = self.result.error or f"chunk {expect} out of order"
                expect += 1
                buf = buf[self.CHUNK:]
