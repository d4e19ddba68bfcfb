"""The lab's top-of-rack router for backend bgp: a netns on the fabric (TOR_ADDR) running BIRD
(AS TOR_AS) that accepts a session from any node address (dynamic BGP), writes what the nodes
announce into its kernel and announces the external subnet behind it, where an external host
(EXTERNAL_HOST) has its default route through the router — what `podnet demo --backend bgp`
reaches without NAT."""
from __future__ import annotations

import os
import subprocess
import time

from .cluster import FABRIC_NET, netns_ip

TOR_ADDR = f"{FABRIC_NET}.253"
TOR_AS = 64600
EXTERNAL_NET = "10.98.0"            # behind the ToR: a subnet the cluster knows only through BGP
EXTERNAL_HOST = f"{EXTERNAL_NET}.2"
RTPROT_BIRD = 12


def start(work: str, fab: str, tor: str, ext: str, hold_time: int, gr_time: int) -> subprocess.Popen[bytes]:
    """Wire the router (`tor` netns) to the fabric bridge in `fab` and to the external host (`ext`
    netns), and start its BIRD; returns the BIRD process once its control socket exists."""
    netns_ip(fab, "link", "add", "fabtor", "type", "veth", "peer", "name", "up0", "netns", tor)
    netns_ip(fab, "link", "set", "fabtor", "master", "fabbr", "up")
    netns_ip(tor, "addr", "add", f"{TOR_ADDR}/24", "dev", "up0")
    netns_ip(tor, "link", "set", "up0", "up")
    netns_ip(tor, "link", "add", "torext", "type", "veth", "peer", "name", "eth0", "netns", ext)
    netns_ip(tor, "addr", "add", f"{EXTERNAL_NET}.1/24", "dev", "torext")
    netns_ip(tor, "link", "set", "torext", "up")
    netns_ip(ext, "addr", "add", f"{EXTERNAL_HOST}/24", "dev", "eth0")
    netns_ip(ext, "link", "set", "eth0", "up")
    netns_ip(ext, "route", "add", "default", "via", f"{EXTERNAL_NET}.1")
    subprocess.run(["ip", "netns", "exec", tor, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    conf = os.path.join(work, "tor-bird.conf")
    with open(conf, "w") as f:
        f.write(f"""router id {TOR_ADDR};
log "{os.path.join(work, 'tor-bird.log')}" {{ info, warning, error, fatal }};
protocol device {{ }}
protocol direct outside {{ ipv4; interface "torext"; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol bgp nodes {{
  local {TOR_ADDR} as {TOR_AS};
  neighbor range {FABRIC_NET}.0/24 as 64512;
  dynamic name "node";
  direct;
  hold time {hold_time};
  connect delay time 0;
  graceful restart on;
  graceful restart time {gr_time};
  ipv4 {{ import all; export where proto = "outside"; }};
}}
""")
    check = subprocess.run(["bird", "-p", "-c", conf], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"the ToR's BIRD configuration: {check.stderr.strip()}")
    ctl = os.path.join(work, "tor-bird.ctl")
    with open(os.path.join(work, "tor-bird.out"), "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", tor, "bird", "-f", "-c", conf, "-s", ctl, "-P", os.path.join(work, "tor-bird.pid")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(ctl):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the ToR's BIRD did not start (see {conf})")
        time.sleep(0.02)
    return proc


def learned_routes(tor: str) -> dict[str, str]:
    """dst → next hop of what the router learned by BGP (in its kernel)."""
    from ..net import netns
    from ..net.rtnl import open_rtnl
    with netns.opened(f"/run/netns/{tor}") as fd, open_rtnl(fd) as rt:
        return {str(r.dst): str(r.gw or "") for r in rt.routes(4) if r.proto == RTPROT_BIRD}
