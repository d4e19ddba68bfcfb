"""Follow one real packet through this netns's nftables (`podnet trace --probe`).

A temporary table (`inet podnet_probe_<pid>`) marks packets of exactly the probe's flow with
`meta nftrace set 1` at the first hooks (prerouting and output, raw priority), so the kernel
reports every chain and rule that packet meets in every table — and nothing else is traced;
`nft monitor trace` reads the reports.  The table is deleted on the way out, error or not.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from . import nft

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
_LINE = re.compile(r"^trace id (\S+) (\S+ \S+) (\S+) (.*)$")


@dataclass
class TraceEvent:
    trace_id: str
    table: str          # "inet podnet_policy"
    chain: str
    what: str           # "packet: iif …", "rule … (verdict drop)", "policy accept", "verdict …"
    verdict: str        # accept | drop | continue | jump … ("" for a packet line)


def parse(line: str) -> TraceEvent | None:
    m = _LINE.match(line.strip())
    if m is None:
        return None
    what = m.group(4).strip()
    v = re.search(r"\(verdict (\w+)", what) or re.match(r"(?:policy|verdict) (\w+)", what)
    return TraceEvent(m.group(1), m.group(2), m.group(3), what, v.group(1) if v else "")


def _match(src: IPAddr, dst: IPAddr, proto: str, port: int) -> str:
    fam = "ip" if dst.version == 4 else "ip6"
    m = f"{fam} saddr {src} {fam} daddr {dst}"
    if proto in ("tcp", "udp") and port:
        m += f" {proto} dport {port}"
    elif proto == "icmp":
        m += " meta l4proto icmp" if dst.version == 4 else " meta l4proto ipv6-icmp"
    return m


@contextlib.contextmanager
def armed(src: IPAddr, dst: IPAddr, proto: str, port: int) -> Iterator[TraceSession]:
    """Trace the flow src → dst (proto, port) in this netns while the block runs."""
    table = f"inet podnet_probe_{os.getpid()}"
    match = _match(src, dst, proto, port)
    canary = 40000 + os.getpid() % 20000
    nft.run("\n".join([f"add table {table}",
                       f"add chain {table} pre {{ type filter hook prerouting priority -300; }}",
                       f"add chain {table} out {{ type filter hook output priority -300; }}",
                       f"add rule {table} pre {match} meta nftrace set 1",
                       f"add rule {table} out {match} meta nftrace set 1",
                       f"add rule {table} out ip daddr 127.0.0.1 udp dport {canary} meta nftrace set 1"]) + "\n")
    mon: subprocess.Popen[bytes] | None = None
    try:
        mon = subprocess.Popen([shutil.which("nft") or "/usr/sbin/nft", "monitor", "trace"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        session = TraceSession(mon, table, canary)
        session.wait_ready()
        yield session
    finally:
        if mon is not None:
            mon.terminate()
            mon.wait(5)
        nft.run_ignoring_missing(f"delete table {table}\n")


class TraceSession:
    def __init__(self, mon: subprocess.Popen[bytes], table: str, canary: int) -> None:
        self.mon, self.table, self.canary = mon, table, canary
        assert mon.stdout is not None
        self.fd = mon.stdout.fileno()       # read raw: a buffered reader would hide lines from select
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.partial = b""

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the monitor reports: send it a traced canary (UDP to 127.0.0.1, this table's own
        rule) until its trace comes back — the probe must not go out before anyone listens."""
        import socket
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < deadline:
                s.sendto(b"podnet-probe-canary", ("127.0.0.1", self.canary))
                if any(f"udp dport {self.canary}" in e.what for e in self.read(0.2, quiet=0.1)):
                    self.read(0.2, quiet=0.1)           # the rest of the canary's report
                    return
        raise TimeoutError("`nft monitor trace` reported nothing: is nftables tracing available here?")

    def read(self, timeout: float, quiet: float = 0.3) -> list[TraceEvent]:
        """Events reported until `timeout`, or until none came for `quiet` seconds after the first."""
        out: list[TraceEvent] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sel.select(min(left, quiet) if out else left):
                if out:
                    break
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            *lines, self.partial = (self.partial + chunk).split(b"\n")
            for line in lines:
                ev = parse(line.decode(errors="replace"))
                if ev is not None:
                    out.append(ev)
        return out
