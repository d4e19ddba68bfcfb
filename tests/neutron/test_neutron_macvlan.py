"""A macvlan pod whose address is a Neutron port: the pod's interface takes the port's MAC (port
security only passes the port's own MAC with its address), the node port gets the (IP, MAC) pair,
and DEL leaves neither.  Neutron runs inside the test's sandbox namespace (where the plugin runs)."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.lab.neutron import NeutronServer
from tests.helpers.cni import nsexec, run_plugin
from tests.neutron.conftest import make_world


@pytest.fixture
def neutron_in_sandbox(neutron_ok: None, sandbox: str) -> Iterator[NeutronServer]:
    server = NeutronServer(netns=sandbox).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_macvlan_pod_takes_its_ports_mac_and_del_leaves_nothing(bin_dir: str, sandbox: str, make_pod: Any,
                                                                    neutron_in_sandbox: NeutronServer) -> None:
    w = make_world(neutron_in_sandbox, "10.20.0.0/24")
    nsexec(sandbox, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0peer")
    nsexec(sandbox, "ip", "addr", "add", f"{w.node_ip}/24", "dev", "up0")
    nsexec(sandbox, "ip", "link", "set", "up0", "up")
    pod = make_pod()
    conf = {"cniVersion": "1.0.0", "name": f"cni-{w.name}", "type": "podnet-macvlan", "master": "up0",
            "agentSocket": "/nonexistent",
            "ipam": {"type": "podnet-neutron-ipam", "neutronUrl": w.server.url, "network": w.name, "node": "n1"}}
    r = run_plugin(f"{bin_dir}/podnet-macvlan", "ADD", conf, netns=pod, ifname="net1", sandbox=sandbox)
    assert r.rc == 0, r.stdout + r.stderr
    port = w.pod_ports()[0]
    link = json.loads(subprocess.run(["ip", "-n", pod.rsplit("/", 1)[1], "-j", "addr", "show", "net1"],
                                     capture_output=True, text=True).stdout)[0]
    assert link["address"] == port["mac_address"], "the pod's interface has the Neutron port's MAC"
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == [port["fixed_ips"][0]["ip_address"]]
    assert w.pairs() == [{"ip_address": port["fixed_ips"][0]["ip_address"], "mac_address": port["mac_address"]}], \
        "the node port found by the host's own address on the subnet, its pair added"
    d = run_plugin(f"{bin_dir}/podnet-macvlan", "DEL", conf, netns=pod, ifname="net1", sandbox=sandbox)
    assert d.rc == 0, d.stdout
    assert w.pod_ports() == [] and w.pairs() == []
