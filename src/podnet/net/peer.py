"""Who is at the other end of a unix socket (SO_PEERCRED): the agent's server checks its
clients with it, and the agent finds the daemons it runs beside itself (BIRD, wireguard-go) by
the process serving their control sockets."""
from __future__ import annotations

import socket
import struct


def peer_creds(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def serving_pid(path: str) -> int:
    """The pid of the process listening on the unix socket at `path`; 0 when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            return peer_creds(s)[0]
    except OSError:
        return 0
