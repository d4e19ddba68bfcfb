"""The agent's netlink watches hear the kernel at once (in a sandbox netns): one of podnet's
routes deleted by hand, a route written into BIRD's table.  Until this test they were deaf
(pyroute2 0.9's socket answers only the thread that made it, and the watch made it in the
caller): repairs and BGP's mirror waited for the next periodic pass, which the lab's short
heartbeats hid."""
from __future__ import annotations

import subprocess
import threading

from podnet.net import netns
from podnet.net.rtnl import watch_podnet_state, watch_table


def test_watches_wake_on_the_kernel_events_they_follow(sandbox: str) -> None:
    table, state = threading.Event(), threading.Event()
    with netns.opened(f"/run/netns/{sandbox}") as fd, netns.entered(fd):
        stops = [watch_table(201, table.set), watch_podnet_state(state.set)]
    try:
        def ip(*argv: str) -> None:
            subprocess.run(["ip", "-n", sandbox, "route", *argv], check=True)
        ip("add", "blackhole", "10.9.8.0/24", "table", "202")      # another table: not heard
        ip("add", "blackhole", "10.9.7.0/24", "proto", "151")       # an addition of ours: not heard
        assert not table.wait(0.5) and not state.is_set()
        ip("add", "blackhole", "10.9.9.0/24", "table", "201")
        assert table.wait(2), "a route in table 201 did not wake the table watch"
        ip("del", "blackhole", "10.9.7.0/24", "proto", "151")
        assert state.wait(2), "one of podnet's routes deleted did not wake the state watch"
    finally:
        for stop in stops:
            stop()
