"""The bgp backend against a real BIRD 2 in a sandbox netns (no peers needed): the render BIRD
runs, the blackhole under the node's own CIDR, and a render BIRD's parser refuses never reaching
the running BIRD — same process, same protocols, same file — with the reason kept for doctor."""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.agent.routing import bgp as bgp_module
from podnet.agent.routing.base import NodeIdentity
from podnet.agent.routing.bgp import Bgp
from podnet.net import netns
from podnet.net.rtnl import RTN_BLACKHOLE, open_rtnl

pytestmark = pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed (apt install bird2)")

ME = NodeIdentity("n1", ipaddress.ip_address("10.99.0.1"))
BLOCK = ipaddress.ip_network("10.244.0.0/26")


@pytest.fixture
def inside(sandbox: str) -> Iterator[None]:
    """This thread in the sandbox (BIRD, started from it, runs there too), with the node's address."""
    subprocess.run(["ip", "-n", sandbox, "link", "add", "up0", "type", "veth", "peer", "name", "up1"], check=True)
    subprocess.run(["ip", "-n", sandbox, "addr", "add", "10.99.0.1/24", "dev", "up0"], check=True)
    subprocess.run(["ip", "-n", sandbox, "link", "set", "up0", "up"], check=True)
    with netns.opened(f"/run/netns/{sandbox}") as fd, netns.entered(fd):
        yield


def test_a_bad_render_never_reaches_the_running_bird(inside: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    b = Bgp(ME, str(tmp_path), peers=("10.99.0.2/64600",))
    nodes = {"n1": {"node": "n1", "addr": "10.99.0.1", "bgp_as": "64512"}}
    try:
        with open_rtnl() as host:
            b.start(host)
            r = b.apply(host, nodes, {BLOCK: "n1"})
            assert f"{BLOCK} blackhole" in r.added
            assert any(e.dst == BLOCK and e.kind == RTN_BLACKHOLE for e in host.routes(4))
            pid, protocols = b.daemon.pid(), b.birdc.protocols()
            assert pid and "peer_10_99_0_2" in protocols
            conf = (tmp_path / "bird" / "bird.conf").read_text()

            real = bgp_module.render
            monkeypatch.setattr(bgp_module, "render", lambda v: real(v) + "protocol bgp broken {\n")
            r = b.apply(host, {**nodes, "n2": {"node": "n2", "addr": "10.99.0.3"}}, {BLOCK: "n1"})
            assert any(x.startswith("BIRD configuration:") for x in r.refused), r.refused
            assert b.daemon.pid() == pid and set(b.birdc.protocols()) == set(protocols)   # untouched
            assert (tmp_path / "bird" / "bird.conf").read_text() == conf
            assert b.status()["config_error"]
    finally:
        b.birdc.down()
        b.stop()
