"""podnet-dhcp against a real DHCP server: dnsmasq (Debian's dnsmasq-base) on the bridge of
an "underlay" netns with a small dynamic range, 2-minute leases and T1/T2 of 6/10 s so a
renewal happens within the test.  Pods are podnet-macvlan on the node's uplink, through a
podnet agent (which runs the exchange in the pod's netns and keeps renewing).

  underlay netns: br0 192.168.77.1/24, dnsmasq range .50-.69
  node netns:     up0 (the macvlan master, wired to br0), the agent
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from podnet.net import probe
from tests.conftest import Agent
from tests.helpers.cni import netns_add, netns_del, nsexec, run_plugin, unique

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(not os.path.exists(DNSMASQ), reason="dnsmasq is not installed (apt install dnsmasq-base)")


class Underlay:
    def __init__(self, tmp: Path) -> None:
        self.ul, self.node = unique("pnt-ul-"), unique("pnt-nd-")
        self.tmp = tmp
        self.leasefile = tmp / "dnsmasq.leases"
        self.server: subprocess.Popen[bytes] | None = None
        for ns in (self.ul, self.node):
            netns_add(ns)
            nsexec(ns, "ip", "link", "set", "lo", "up")
        nsexec(self.ul, "ip", "link", "add", "br0", "type", "bridge")
        nsexec(self.ul, "ip", "addr", "add", "192.168.77.1/24", "dev", "br0")
        nsexec(self.ul, "ip", "link", "set", "br0", "up")
        nsexec(self.ul, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "up0", "netns", self.node)
        nsexec(self.ul, "ip", "link", "set", "ul0", "master", "br0", "up")
        nsexec(self.node, "ip", "link", "set", "up0", "up")

    def start_server(self) -> None:
        self.leasefile.touch()
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ul, DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--port=0",
             "--user=root", "--interface=br0", "--bind-interfaces", "--dhcp-authoritative",
             "--no-ping",   # dnsmasq would ping each address first (3 s, one client at a time)
             "--dhcp-range=192.168.77.50,192.168.77.69,255.255.255.0,2m",
             "--dhcp-option=option:router,192.168.77.1", "--dhcp-option=option:dns-server,192.168.77.53",
             "--dhcp-option=option:domain-name,pod.test",
             "--dhcp-option=option:classless-static-route,10.50.0.0/16,192.168.77.1,0.0.0.0/0,192.168.77.1",
             "--dhcp-option=option:T1,6", "--dhcp-option=option:T2,10",
             f"--dhcp-leasefile={self.leasefile}", "--log-dhcp", f"--log-facility={self.tmp / 'dnsmasq.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = self.tmp / "dnsmasq.log"
        assert wait_for(lambda: self.server.poll() is not None or (log.exists() and "DHCP, IP range" in log.read_text()),
                        10), "dnsmasq did not start serving"
        assert self.server.poll() is None, log.read_text()

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(10)

    def leases(self) -> dict[str, tuple[int, str, str]]:
        """ip -> (expiry, mac, hostname), from the server's own lease file.  dnsmasq rewrites
        it in place, so a read can catch it half written: read until two reads agree."""
        def once() -> dict[str, tuple[int, str, str]]:
            out = {}
            for line in self.leasefile.read_text().splitlines():
                f = line.split()
                if len(f) >= 4:
                    out[f[2]] = (int(f[0]), f[1], f[3])
            return out
        prev = once()
        while True:
            time.sleep(0.05)
            cur = once()
            if cur == prev:
                return cur
            prev = cur

    def remove(self) -> None:
        self.stop_server()
        for ns in (self.node, self.ul):
            netns_del(ns)


@pytest.fixture
def underlay(tmp_path: Path) -> Iterator[Underlay]:
    u = Underlay(tmp_path)
    try:
        yield u
    finally:
        u.remove()


def conf(sock: str, timeout: float = 10) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "lan", "type": "podnet-macvlan", "master": "up0", "mode": "bridge",
            "agentSocket": sock,
            "ipam": {"type": "podnet-dhcp", "timeout": timeout,
                     "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}}


def add(bin_dir: str, u: Underlay, c: dict[str, Any], pod: str, name: str) -> Any:
    return run_plugin(f"{bin_dir}/podnet-macvlan", "ADD", c, netns=f"/run/netns/{pod}", container_id=name,
                      ifname="eth0", sandbox=u.node, args=f"K8S_POD_NAME={name}")


def pod_addrs(pod: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", pod, sys.executable, "-c",
                          "import socket,fcntl,struct\n"
                          "from podnet.net.rtnl import open_rtnl\n"
                          "with open_rtnl() as r:\n"
                          "  lk=r.link('eth0')\n"
                          "  print(' '.join(str(a) for a in r.addrs(lk.index, 4)) if lk else '')"],
                         capture_output=True, text=True)
    return out.stdout.split()


def wait_for(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_pods_lease_renew_survive_an_agent_restart_and_release(bin_dir: str, underlay: Underlay,
                                                               tmp_path: Path) -> None:
    u = underlay
    u.start_server()
    state = tmp_path / "state"
    agent = Agent(u.node, str(tmp_path / "agent.sock"), str(tmp_path / "agent.log"), ["--state-dir", str(state)])
    pods = [unique("pnt-p-") for _ in range(8)]
    try:
        for p in pods:
            netns_add(p)
        c = conf(agent.sock)
        with ThreadPoolExecutor(8) as ex:                                  # 8 pods at once
            calls = list(ex.map(lambda i: add(bin_dir, u, c, pods[i], f"web-{i}"), range(8)))
        for call in calls:
            assert call.rc == 0, call.stdout + call.stderr
        ips = [call.out["ips"][0]["address"] for call in calls]
        assert len(set(ips)) == 8, ips
        for i, (call, ip) in enumerate(zip(calls, ips, strict=True)):
            iface = ipaddress.ip_interface(ip)
            assert iface.network == ipaddress.ip_network("192.168.77.0/24")
            assert 50 <= int(iface.ip) - int(ipaddress.ip_address("192.168.77.0")) <= 69
            assert call.out["ips"][0]["gateway"] == "192.168.77.1"
            routes = {(r["dst"], r.get("gw")) for r in call.out["routes"]}
            assert routes == {("10.50.0.0/16", "192.168.77.1"), ("0.0.0.0/0", "192.168.77.1")}, routes
            assert call.out["dns"] == {"nameservers": ["192.168.77.53"], "domain": "pod.test"}
            assert pod_addrs(pods[i]) == [ip], "the leased address is not on the pod's eth0"
        assert probe.ping(f"/run/netns/{pods[0]}", "192.168.77.1"), "a pod cannot reach the server's LAN"
        server = u.leases()
        assert {ipaddress.ip_interface(ip).ip.exploded for ip in ips} == set(server)
        assert {h for _, _, h in server.values()} == {f"web-{i}" for i in range(8)}, "host-name not provided"

        listing = subprocess.run([sys.executable, "-m", "podnet.cli", "dhcp", "leases", "--state-dir", str(state),
                                  "--json"], capture_output=True, text=True)
        assert sorted(x["ip"] for x in json.loads(listing.stdout)) == sorted(str(ipaddress.ip_interface(i).ip)
                                                                              for i in ips)

        first = str(ipaddress.ip_interface(ips[0]).ip)
        before = server[first][0]
        assert wait_for(lambda: u.leases().get(first, (0,))[0] > before, 20), "the agent never renewed the lease (T1 = 6 s)"

        agent.proc.kill()                                                  # kill -9: no goodbye
        agent.proc.wait()
        agent = Agent(u.node, str(tmp_path / "agent2.sock"), str(tmp_path / "agent2.log"),
                      ["--state-dir", str(state)])
        after_restart = u.leases()[first][0]
        assert wait_for(lambda: u.leases().get(first, (0,))[0] > after_restart, 20), \
            "a restarted agent did not keep renewing the running pods' leases"
        assert pod_addrs(pods[0]) == [ips[0]]

        c = conf(agent.sock)
        gc = dict(c, **{"cniVersion": "1.1.0", "cni.dev/valid-attachments":
                        [{"containerID": f"web-{i}", "ifname": "eth0"} for i in range(7)]})   # web-7 is gone
        g = run_plugin(f"{bin_dir}/podnet-macvlan", "GC", gc, sandbox=u.node)
        assert g.rc == 0, g.stdout
        gone = str(ipaddress.ip_interface(ips[7]).ip)
        assert wait_for(lambda: gone not in u.leases() and len(u.leases()) == 7, 5), \
            f"GC did not release the lease of a pod that is gone: {u.leases()}"
        for i, p in enumerate(pods):
            d = run_plugin(f"{bin_dir}/podnet-macvlan", "DEL", c, netns=f"/run/netns/{p}", container_id=f"web-{i}",
                           ifname="eth0", sandbox=u.node)
            assert d.rc == 0, d.stdout
        assert wait_for(lambda: u.leases() == {}, 5), f"DEL did not release: server still lists {u.leases()}"
        again = run_plugin(f"{bin_dir}/podnet-macvlan", "DEL", c, netns=f"/run/netns/{pods[0]}",
                           container_id="web-0", ifname="eth0", sandbox=u.node)
        assert again.rc == 0, "a repeated DEL must succeed"
        assert not [f for f in os.listdir(state / "dhcp") if f.endswith(".json")], "lease state left behind"
    finally:
        agent.stop()
        for p in pods:
            netns_del(p)


def test_no_server_answers_code_11_in_bounded_time_nothing_left(bin_dir: str, underlay: Underlay,
                                                                 tmp_path: Path) -> None:
    u = underlay                                                           # no dnsmasq started
    state = tmp_path / "state"
    agent = Agent(u.node, str(tmp_path / "agent.sock"), str(tmp_path / "agent.log"), ["--state-dir", str(state)])
    pod = unique("pnt-p-")
    try:
        netns_add(pod)
        t0 = time.monotonic()
        r = add(bin_dir, u, conf(agent.sock, timeout=3), pod, "lonely")
        took = time.monotonic() - t0
        assert r.rc != 0 and r.out["code"] == 11, r.stdout
        assert "no DHCP server answered on eth0" in r.out["msg"]
        assert took < 10, f"ADD took {took:.1f}s with a 3 s timeout"
        assert pod_addrs(pod) == [] and "eth0" not in subprocess.run(
            ["ip", "netns", "exec", pod, "ip", "-o", "link"], capture_output=True, text=True).stdout, \
            "the macvlan link was left in the pod"
        assert not (state / "dhcp").exists() or not os.listdir(state / "dhcp"), "a half lease was left behind"
    finally:
        agent.stop()
        netns_del(pod)


def test_without_an_agent_add_refuses_and_leaves_nothing(bin_dir: str, underlay: Underlay, tmp_path: Path) -> None:
    pod = unique("pnt-p-")
    try:
        netns_add(pod)
        r = add(bin_dir, underlay, conf(str(tmp_path / "no-agent.sock")), pod, "orphan")
        assert r.rc != 0 and r.out["code"] == 11 and "needs the podnet agent" in r.out["msg"], r.stdout
        assert "eth0" not in subprocess.run(["ip", "netns", "exec", pod, "ip", "-o", "link"],
                                            capture_output=True, text=True).stdout
    finally:
        netns_del(pod)


def test_an_unrenewable_lease_keeps_its_address_until_it_really_expires(underlay: Underlay, tmp_path: Path) -> None:
    """No server answers the renewals: the address stays while the lease is valid, is removed
    when it expires, and the failure is logged.  The keeper runs in this process here."""
    import logging

    from podnet.dhcp.keeper import Lease, LeaseKeeper
    pod = unique("pnt-p-")
    netns_add(pod)
    keeper = LeaseKeeper(str(tmp_path / "state"))
    try:
        nsexec(underlay.node, "ip", "link", "add", "eth0", "link", "up0", "type", "macvlan", "mode", "bridge")
        nsexec(underlay.node, "ip", "link", "set", "eth0", "netns", pod)
        nsexec(pod, "ip", "addr", "add", "192.168.77.60/24", "dev", "eth0")
        nsexec(pod, "ip", "link", "set", "eth0", "up")
        now = time.time()
        lease = Lease("c9/lan/eth0", "lan", "c9", "eth0", f"/run/netns/{pod}", "02:00:00:00:00:09", "192.168.77.60", 24,
                      "192.168.77.1", "ff:ff:ff:ff:ff:ff", now, lease_time=4, t1=1, t2=2)
        keeper._leases[lease.client_id] = lease
        keeper._save(lease)
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda rec: records.append(rec.getMessage())  # type: ignore[method-assign]
        logging.getLogger("podnet.dhcp.keeper").addHandler(handler)
        keeper.start()
        assert wait_for(lambda: any("rebind of" in r for r in records), 4), records    # past T2, before expiry
        assert time.time() < now + 4, "the keeper reached T2 only after the lease expired"
        assert pod_addrs(pod) == ["192.168.77.60/24"], "the address went before the lease expired"
        assert wait_for(lambda: pod_addrs(pod) == [], 6), "an expired lease's address stayed on the pod"
        assert time.time() >= now + 4
        assert any("expired without renewal" in r for r in records), records
        assert any("renew of" in r or "rebind of" in r for r in records), records
        assert keeper.get(lease.client_id) is None and not os.listdir(tmp_path / "state" / "dhcp")
    finally:
        keeper.stop()
        logging.getLogger("podnet.dhcp.keeper").handlers.clear()
        netns_del(pod)
