"""Raw packet sockets on a pod's interface (the DHCP client's transport: the interface has no
address while it asks for one)."""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from . import netns
from .rtnl import open_rtnl

ETH_P_IP = 0x0800


@contextlib.contextmanager
def link_socket(netns_path: str, ifname: str, bring_up: bool = True) -> Iterator[tuple[socket.socket, str]]:
    """(an AF_PACKET socket for IPv4 frames bound to `ifname` in that netns, the link's MAC).

    The socket is created while only this thread is in the pod's netns; it stays bound to that
    netns and interface afterwards, wherever the thread goes."""
    with netns.opened(netns_path) as fd:
        with open_rtnl(fd) as pod:
            lk = pod.require_link(ifname)
            if bring_up and not lk.up:
                pod.set_link(lk.index, state="up")
        with netns.entered(fd):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        s.bind((ifname, ETH_P_IP))
        yield s, lk.mac
    finally:
        s.close()
