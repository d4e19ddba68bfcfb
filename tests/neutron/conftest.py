"""The Neutron tier: a real neutron 29 (lab/neutron.py: noauth, no agents) started once per
session on loopback — sqlite for most tests, a private MariaDB for the concurrency ones.  Every
test makes its own Neutron network (its own subnet and node "VM" port), so tests never share
addresses or pairs."""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from podnet.lab.neutron import NeutronServer, NeutronSetupError, venv


def _missing() -> str:
    try:
        venv()
    except NeutronSetupError as e:
        return str(e)
    return ""


@pytest.fixture(scope="session")
def neutron_ok() -> None:
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"Neutron: {why}")
        pytest.skip(f"Neutron: {why}")


@pytest.fixture(scope="session")
def neutron(neutron_ok: None) -> Iterator[NeutronServer]:
    server = NeutronServer(max_pairs=10).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neutron_mariadb(neutron_ok: None) -> Iterator[NeutronServer]:
    if not shutil.which("mariadb-install-db"):
        pytest.skip("no mariadb-server (apt install mariadb-server: scripts/setup.sh does)")
    server = NeutronServer(db="mariadb", max_pairs=50).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class World:
    """A Neutron network of one test: its subnet, a node VM's port on it, and the CNI config."""
    server: NeutronServer
    name: str
    network_id: str
    subnet_id: str
    cidr: str
    node_port: str
    node_ip: str

    def ipam(self, **extra: Any) -> dict[str, Any]:
        return {"type": "podnet-neutron-ipam", "neutronUrl": self.server.url, "network": self.name,
                "nodeAddress": self.node_ip, "node": "n1", "timeout": 5, **extra}

    def conf(self, cni_version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        return {"cniVersion": cni_version, "name": f"cni-{self.name}", "type": "podnet-macvlan",
                "ipam": self.ipam(**extra)}

    def pairs(self) -> list[dict[str, str]]:
        _, doc = self.server.request("GET", f"/v2.0/ports/{self.node_port}")
        return list(doc["port"]["allowed_address_pairs"])

    def pod_ports(self, owner: str = "podnet:pod") -> list[dict[str, Any]]:
        return self.server.ports(network_id=self.network_id, device_owner=owner)


def make_world(server: NeutronServer, cidr: str = "10.20.0.0/24", pools: list[dict[str, str]] | None = None,
               gateway: str = "") -> World:
    import ipaddress
    net = ipaddress.ip_network(cidr)
    name = f"t{uuid.uuid4().hex[:8]}"
    n = server.create("network", name=name)
    gw = gateway or str(net[1])
    s = server.create("subnet", network_id=n["id"], ip_version=4, cidr=cidr, gateway_ip=gw,
                      allocation_pools=pools or [{"start": str(net[10]), "end": str(net[99])}],
                      dns_nameservers=[str(net[2])])
    node_ip = str(net[5])
    vm = server.create("port", network_id=n["id"], name=f"vm-{name}", device_owner="compute:nova",
                       device_id=f"vm-{name}", fixed_ips=[{"subnet_id": s["id"], "ip_address": node_ip}])
    return World(server, name, n["id"], s["id"], cidr, vm["id"], node_ip)


@pytest.fixture
def world(neutron: NeutronServer) -> World:
    return make_world(neutron)
