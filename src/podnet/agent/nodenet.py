"""The node's pod network as the agent sets it up: which addresses its pods take (the cluster
IPAM in etcd, or — host-local mode, flannel style — a subnet of the cluster CIDR leased to
this node and handed out by host-local), the node's masquerade for traffic leaving the
cluster, and the conflist kubelet's runtime reads.

The conflist is written only once the node is ready (registered, subnet held, one routing
pass done): until then the runtime finds no network config and keeps the node NotReady
instead of starting pods that could not reach the other nodes.  It is left in place when
the agent stops, so pods stay deletable while it restarts.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from .. import conflists
from ..ipam.cluster import ClusterIpam, Pool

log = logging.getLogger(__name__)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
MODES = ("cluster", "host-local", "neutron")


@dataclass
class Underlay:
    """pod-network underlay: where pods hang off and how they reach the rest (agent/config.py)."""
    link: str = "macvlan"                       # macvlan | ipvlan
    interface: str = ""                         # the uplink (the backend resolves it)
    subnets: list[IPNet] = field(default_factory=list)
    gateways: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    service_cidrs: list[IPNet] = field(default_factory=list)

    def subnet_of(self, cidr: IPNet) -> IPNet:
        return next(n for n in self.subnets if n.version == cidr.version and cidr.subnet_of(n))  # type: ignore[arg-type]

    def gateway_of(self, family: int) -> str:
        return next((str(g) for g in self.gateways if g.version == family), "")


@dataclass
class NodeNetwork:
    network: str
    mode: str                              # "cluster" or "host-local"
    cluster_cidrs: list[IPNet]
    etcd: list[str]
    prefix: str
    agent_socket: str
    block_size: int = 26                   # cluster mode: the IPAM's block size
    subnet_size: int = 24                  # host-local mode: each node's subnet
    conf_dir: str = ""
    data_dir: str = ""                     # host-local's lease store ("" = its default)
    subnets: list[IPNet] = field(default_factory=list)
    etcd_tls: dict[str, str] = field(default_factory=dict)   # etcdCAFile… for the cluster IPAM's config
    underlay: Underlay | None = None       # pod-network underlay (None: routed)
    attachments: bool = False              # the conflist's `attachments` section (the agent runs them)
    neutron: dict[str, Any] = field(default_factory=dict)   # neutron mode: the IPAM's keys (endpoint, network …)
    node_address: str = ""                 # neutron mode: how the IPAM finds the node VM's port

    def pools(self) -> list[Pool]:
        """One pool per cluster CIDR.  IPv6 sizes follow the IPv4 ones' host bits (a /26 block
        ↔ /122, a /24 node subnet ↔ /120), never larger than the CIDR itself."""
        size = self.subnet_size if self.mode == "host-local" else self.block_size
        name = f"{self.network}-subnets" if self.mode == "host-local" else self.network
        out = []
        for c in self.cluster_cidrs:
            if c.version == 4:
                out.append(Pool(name, c, max(size, c.prefixlen)))
            else:
                out.append(Pool(f"{name}-v6", c, max(128 - (32 - size), c.prefixlen)))
        return out

    def claim(self, ipam: ClusterIpam) -> None:
        """host-local mode: take (or keep) this node's subnet of every cluster CIDR."""
        if self.mode == "host-local":
            self.subnets = [ipam.claim_subnet(p) for p in self.pools()]
            log.info("node subnets: %s", ", ".join(map(str, self.subnets)))

    def ipam_conf(self, node: str) -> dict[str, Any]:
        default_routes = [{"dst": "0.0.0.0/0" if c.version == 4 else "::/0"} for c in self.cluster_cidrs]
        if self.mode == "neutron":          # each pod a Neutron port; cidr pairs: node blocks of the v4 CIDR
            v4 = [c for c in self.cluster_cidrs if c.version == 4]
            return {"type": "podnet-neutron-ipam", **self.neutron, "node": node,
                    **({"nodeAddress": self.node_address} if self.node_address else {}),
                    **({"podRange": str(v4[0]), "blockSize": max(self.block_size, v4[0].prefixlen)} if v4 else {}),
                    "pairMac": "node" if self.underlay is not None and self.underlay.link == "ipvlan" else "pod",
                    "routes": [r for r in default_routes if r["dst"] == "0.0.0.0/0"]}
        if self.mode == "host-local":
            conf: dict[str, Any] = {"type": "podnet-host-local", "ranges": [[self._range(s)] for s in self.subnets],
                                    "routes": default_routes}
            if self.data_dir:
                conf["dataDir"] = self.data_dir
            return conf
        pools = []
        for p in self.pools():
            if self.underlay is not None:       # addresses of the pool, on the datacenter subnet, its gateway
                pools.append({"name": p.name, "cidr": str(p.cidr), "blockSize": p.block_size,
                              "network": str(self.underlay.subnet_of(p.cidr)),
                              **({"gateway": g} if (g := self.underlay.gateway_of(p.cidr.version)) else {})})
                continue
            pools.append({"name": p.name, "cidr": str(p.cidr), "blockSize": p.block_size,
                          "gateway": str(next(p.cidr.hosts()))})
        return {"type": "podnet-cluster-ipam", "etcdEndpoints": self.etcd, "prefix": self.prefix, "node": node,
                "pools": pools, "routes": default_routes, **self.etcd_tls}

    def _range(self, leased: IPNet) -> dict[str, str]:
        """host-local's range for the node's leased subnet: routed, the subnet itself; underlay, the
        lease's addresses on the datacenter subnet, with its gateway."""
        if self.underlay is None:
            return {"subnet": str(leased)}
        subnet = self.underlay.subnet_of(leased)
        out = {"subnet": str(subnet), "rangeStart": str(max(leased[0], subnet[1])),
               "rangeEnd": str(min(leased[-1], subnet[-2]))}
        gw = self.underlay.gateway_of(leased.version)
        return {**out, "gateway": gw} if gw else out

    def conflist(self, node: str, mtu: int) -> dict[str, Any]:
        if self.underlay is not None:
            u = self.underlay
            out = conflists.underlay_conflist(self.network, self.ipam_conf(node), u.link, u.interface,
                                              [str(c) for c in u.service_cidrs], self.agent_socket)
        else:
            out = conflists.cluster_conflist(self.network, self.ipam_conf(node), mtu, self.agent_socket)
        if self.attachments:
            out["plugins"][0]["attachments"] = {}
        return out

    def write_conflist(self, node: str, mtu: int) -> str:
        path = conflists.write_conflist(self.conf_dir, self.conflist(node, mtu))
        log.info("node ready: wrote %s", path)
        return path
