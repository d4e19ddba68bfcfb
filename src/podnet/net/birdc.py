"""A client for BIRD's control socket — what `birdc` speaks, in ~60 lines, so the agent needs no
birdc process per question.

The protocol (BIRD's doc/prog "Client protocol"): the server greets with `0001 BIRD x.y ready.`;
each command is one line; each reply line starts with a 4-digit code followed by '-' (more lines
follow) or ' ' (the reply's last line); a line starting with a space continues the previous
code.  Codes 0xxx are actions done, 1xxx table data, 2xxx table headings, 8xxx run-time errors,
9xxx parse errors.  (There is no maintained Python library for it; Calico's node does the same in
Go.)  Only the replies podnet reads are parsed: `show protocols` (one line per protocol — name,
protocol, table, state, since, info) and `show status`.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from .errors import NetError


class BirdError(NetError):
    """BIRD refused a command (8xxx/9xxx) or its socket does not answer."""


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str          # BGP, Static, Kernel, Device…
    state: str          # up, down, start…
    since: str
    info: str           # for BGP: Established, Active, Connect… and the last error


class Birdc:
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path, self.timeout = path, timeout

    def command(self, line: str) -> list[tuple[int, str]]:
        """(code, text) of every reply line; BirdError on an error reply."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                f = s.makefile("rwb")
                self._read(f)                      # the greeting
                f.write(line.encode() + b"\n")
                f.flush()
                reply = self._read(f)
        except OSError as e:
            raise BirdError(f"BIRD control socket {self.path}: {e.strerror or e}") from None
        bad = [t for c, t in reply if c >= 8000]
        if bad:
            raise BirdError(f"BIRD: {'; '.join(bad)}")
        return reply

    @staticmethod
    def _read(f: object) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        code = 0
        while True:
            raw = f.readline()                     # type: ignore[attr-defined]
            if not raw:
                raise OSError("connection closed mid-reply")
            line = raw.decode(errors="replace").rstrip("\n")
            if line[:4].isdigit() and len(line) >= 5 and line[4] in "- ":
                code = int(line[:4])
                out.append((code, line[5:]))
                if line[4] == " ":
                    return out
            else:                                  # " text": continues the previous code
                out.append((code, line[1:]))

    def alive(self) -> bool:
        try:
            self.command("show status")
            return True
        except BirdError:
            return False

    def protocols(self) -> dict[str, Protocol]:
        out = {}
        for code, text in self.command("show protocols"):
            if code != 1002:
                continue
            f = text.split(None, 5)
            if len(f) >= 5:
                out[f[0]] = Protocol(f[0], f[1], f[3], f[4], f[5].strip() if len(f) > 5 else "")
        return out

    def status(self) -> str:
        """The daemon's state line (0013 "Daemon is up and running", or a graceful restart in progress)."""
        return next((t for c, t in self.command("show status") if c == 13), "")

    def configure(self, path: str) -> str:
        """Reload from `path` (checked beforehand): the text of BIRD's answer (0003 Reconfigured, …)."""
        reply = self.command(f'configure "{path}"')
        return reply[-1][1]

    def down(self) -> None:
        """Shut BIRD down cleanly: every session closed (peers withdraw this node's routes)."""
        try:
            self.command("down")
        except BirdError as e:
            if "closed" not in str(e):
                raise
