"""A pod's default route moved to another of its interfaces (an attachment's `default-route`)."""
from __future__ import annotations

import ipaddress

from . import netns
from .rtnl import open_rtnl


def move_default_routes(netns_path: str, via: list[tuple[str, str]]) -> None:
    """For each (interface, gateway): the pod's default route of the gateway's family goes via it
    on that interface, replacing the one it had (the cluster network's)."""
    with netns.opened(netns_path) as fd, open_rtnl(fd) as pod:
        for ifname, gw_text in via:
            gw = ipaddress.ip_address(gw_text)
            lk = pod.require_link(ifname)
            default = ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0")
            for r in pod.routes(gw.version):
                if r.dst == default:
                    pod.del_route(default, gw=r.gw, oif=r.oif)
            pod.add_route(default, gw=gw, oif=lk.index)
