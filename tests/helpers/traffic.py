"""Real traffic for kernel tests: a TCP/UDP server in one netns that answers with a
banner, and a client in another that returns what it got (so a test knows the packet
reached *that* server, not merely that something accepted it)."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

PY = "/usr/bin/python3"

SERVER = r"""
import socket, sys, threading
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
proto, addr, port, banner = sys.argv[2], sys.argv[1], int(sys.argv[3]), sys.argv[4].encode()
if proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        c.sendall(banner + b" " + peer[0].encode() + b"\n"); c.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(banner + b" " + peer[0].encode() + b"\n", peer)
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = sys.argv[5] if len(sys.argv) > 5 else ""
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=float(sys.argv[4]),
                                     source_address=(source, 0) if source else None)
        print(s.recv(200).decode().strip())
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]))
        if source:
            s.bind((source, 0))
        s.sendto(b"hi", (host, port)); print(s.recv(200).decode().strip())
except OSError as e:
    print("ERROR", e)
"""


@contextmanager
def server(netns: str, proto: str, port: int, banner: str, addr: str = "0.0.0.0") -> Iterator[None]:
    """Run a banner server in `netns` (a name under /run/netns) until the block ends."""
    p = subprocess.Popen(["ip", "netns", "exec", netns, PY, "-c", SERVER, addr, proto, str(port), banner],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"server did not start: {line} {p.stderr.read() if p.stderr else ''}")
        yield
    finally:
        p.kill()
        p.wait()


def fetch(netns: str, proto: str, host: str, port: int, timeout: float = 2.0, source: str = "") -> str:
    """The banner a client in `netns` gets from host:port ('ERROR …' when nothing answers);
    source: the address the client binds (as `curl --interface ADDRESS`)."""
    deadline = time.monotonic() + 3 * timeout
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", netns, PY, "-c", CLIENT, proto, host, str(port), str(timeout),
                              *([source] if source else [])], capture_output=True, text=True).stdout.strip()
        if not out.startswith("ERROR") or proto == "tcp":
            return out
    return out


RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
skip, window = float(sys.argv[3]), float(sys.argv[4])
start = time.monotonic(); counted = 0
while True:
    data = c.recv(65536)
    if not data:
        break
    t = time.monotonic() - start
    if skip <= t < skip + window:
        counted += len(data)
    if t >= skip + window:
        break
print(counted * 8 / window, flush=True)
"""

SENDER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
end = time.monotonic() + float(sys.argv[3]); buf = b"x" * 65536
try:
    while time.monotonic() < end:
        s.sendall(buf)
except OSError:
    pass
"""


def measure_bits_per_second(src_ns: str, dst_ns: str, dst_ip: str, port: int = 5201,
                            skip: float = 0.5, window: float = 3.0) -> float:
    """A bulk TCP transfer src → dst; the receiver's rate over [skip, skip+window) seconds."""
    rx = subprocess.Popen(["ip", "netns", "exec", dst_ns, PY, "-c", RECEIVER, dst_ip, str(port), str(skip),
                           str(window)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout is not None
        if rx.stdout.readline().strip() != "ready":
            raise RuntimeError("receiver did not start")
        tx = subprocess.Popen(["ip", "netns", "exec", src_ns, PY, "-c", SENDER, dst_ip, str(port),
                               str(skip + window + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, _ = rx.communicate(timeout=skip + window + 15)
        tx.kill()
        tx.wait()
        return float(out.strip().splitlines()[-1])
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
