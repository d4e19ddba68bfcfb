"""Servers in lab pods and a prober that checks connectivity between them, in one process:
a thread moved into a pod's network namespace owns that pod's sockets (net/netns.move_this_thread),
so nine pods' servers and a 72-cell matrix need no process per pod.

  PodServers   TCP listeners that answer "ok" and UDP sockets that echo, on the ports asked
  probe        from each source pod, every target at once (non-blocking sockets, one selector):
               a cell is open when the TCP handshake completes / the UDP echo returns within the
               timeout.  Cells that fail are tried again with a longer timeout, so a slow machine
               can make a probe slower but never turns an allowed connection into "denied" —
               and nothing turns a denied one into "allowed".
"""
from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..net.netns import move_this_thread


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class PodServers:
    """Servers in one pod: TCP and UDP on each port, for both families (:: takes v4 too)."""

    def __init__(self, netns: str, tcp: Iterable[int] = (80, 81), udp: Iterable[int] = (80, 81)) -> None:
        self.netns = netns
        self.tcp, self.udp = tuple(tcp), tuple(udp)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"lab-serve-{netns}", daemon=True)
        self.thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"servers in {netns} did not start: {self._error}")

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        try:
            move_this_thread(self.netns)
            for port in self.tcp:
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", port))
                s.listen(256)
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, "tcp")
                socks.append(s)
            for port in self.udp:
                u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                u.bind(("::", port))
                u.setblocking(False)
                sel.register(u, selectors.EVENT_READ, "udp")
                socks.append(u)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            for key, _ in sel.select(0.2):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    if key.data == "tcp":
                        conn, _ = ready.accept()
                        conn.setblocking(True)
                        conn.settimeout(1)
                        try:
                            conn.sendall(b"ok\n")
                        finally:
                            conn.close()
                    else:
                        data, addr = ready.recvfrom(2048)
                        ready.sendto(data, addr)
                except OSError:
                    continue
        for s in socks:
            s.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


@dataclass(frozen=True)
class Target:
    key: str           # what the matrix calls it (namespace/name)
    ip: str


def _probe_from(netns: str, targets: list[Target], port: int, proto: str, timeout: float,
                out: dict[str, bool]) -> None:
    """In the source pod's netns: every target at once; out[target key] = open."""
    move_this_thread(netns)
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, Target] = {}
    for t in targets:
        kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
        s = socket.socket(_family(t.ip), kind)
        s.setblocking(False)
        if proto == "TCP":
            err = s.connect_ex((t.ip, port))
            if err not in (0, 115):            # EINPROGRESS
                out[t.key] = False
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE)
        else:
            try:
                s.sendto(b"probe", (t.ip, port))
            except OSError:
                out[t.key] = False
                s.close()
                continue
            sel.register(s, selectors.EVENT_READ)
        pending[s] = t
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            done = key.fileobj
            assert isinstance(done, socket.socket)
            t = pending.pop(done)
            if proto == "TCP":
                out[t.key] = done.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            else:
                try:
                    out[t.key] = done.recv(64) == b"probe"
                except OSError:
                    out[t.key] = False
            sel.unregister(done)
            done.close()
    for s, t in pending.items():
        out[t.key] = False
        s.close()


def probe(sources: dict[str, str], targets: list[Target], port: int, proto: str, timeout: float = 0.5,
          retry_timeout: float = 2.0) -> dict[tuple[str, str], bool]:
    """{(source key, target key): open} for every source (key → its netns path) to every other
    target.  Closed cells are probed once more with retry_timeout (an overloaded machine may be
    slow to answer; a closed cell that opens on retry was open)."""
    result: dict[tuple[str, str], bool] = {}

    def run(timeout_s: float, cells: dict[str, list[Target]]) -> None:
        outs: dict[str, dict[str, bool]] = {src: {} for src in cells}
        threads = [threading.Thread(target=_probe_from, args=(sources[src], tg, port, proto, timeout_s, outs[src]),
                                    daemon=True) for src, tg in cells.items() if tg]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout_s + 10)
        for src, got in outs.items():
            for tkey, ok in got.items():
                result[(src, tkey)] = ok

    run(timeout, {src: [t for t in targets if t.key != src] for src in sources})
    again: dict[str, list[Target]] = {}
    for (src, tkey), ok in result.items():
        if not ok:
            again.setdefault(src, []).extend(t for t in targets if t.key == tkey)
    if again:
        run(retry_timeout, again)
    return result


def connect_once(netns: str, ip: str, port: int, timeout: float) -> bool:
    """One TCP connection from a pod (a thread of its own in that netns)."""
    out: dict[str, bool] = {}
    th = threading.Thread(target=_probe_from, args=(netns, [Target("t", ip)], port, "TCP", timeout, out), daemon=True)
    th.start()
    th.join(timeout + 10)
    return out.get("t", False)
