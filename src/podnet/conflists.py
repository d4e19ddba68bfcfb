"""The conflists podnet writes: a bridge network for `podnet install`, a Kubernetes node's (the
one-exec `podnet` plugin, or the four-plugin chain), and the node conflist the agent writes once
its node is ready.  Pure data and one atomic
file write — shared by the installer and the agent without either importing the other."""
from __future__ import annotations

import json
import os
from typing import Any

from .wire import DEFAULT_SOCKET


def bridge_conflist(network: str, subnets: list[str], bridge: str = "podnet0", ip_masq: bool = True,
                    agent_socket: str = DEFAULT_SOCKET, cni_version: str = "1.0.0",
                    data_dir: str | None = None) -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "podnet-host-local", "ranges": [[{"subnet": s}] for s in subnets],
                            "routes": [{"dst": "0.0.0.0/0"}] if any(":" not in s for s in subnets) else []}
    if any(":" in s for s in subnets):
        ipam["routes"].append({"dst": "::/0"})
    if data_dir:
        ipam["dataDir"] = data_dir
    return {"cniVersion": cni_version, "name": network, "plugins": [
        {"type": "podnet-bridge", "bridge": bridge, "isGateway": True, "ipMasq": ip_masq,
         "hairpinMode": True, "agentSocket": agent_socket, "ipam": ipam},
    ]}


def kubernetes_conflist(network: str, subnets: list[str], bridge: str = "podnet0",
                        agent_socket: str = DEFAULT_SOCKET, cni_version: str = "1.0.0",
                        data_dir: str | None = None) -> dict[str, Any]:
    """A Kubernetes node's pods in ONE exec: the `podnet` plugin in bridge mode with the portmap
    (hostPort), bandwidth (pod annotations) and tuning sections, declaring the capabilities the
    runtime fills in — what the chain below does, in one call."""
    main = bridge_conflist(network, subnets, bridge, True, agent_socket, cni_version, data_dir)["plugins"][0]
    main.update(type="podnet", mode="bridge", portmap={"snat": True}, bandwidth={}, tuning={},
                capabilities={"portMappings": True, "bandwidth": True, "mac": True, "ips": True})
    return {"cniVersion": cni_version, "name": network, "plugins": [main]}


def kubernetes_chain_conflist(network: str, subnets: list[str], bridge: str = "podnet0",
                              agent_socket: str = DEFAULT_SOCKET, cni_version: str = "1.0.0",
                              data_dir: str | None = None) -> dict[str, Any]:
    """Kubernetes' usual chain as four plugins: bridge → portmap (hostPort) → bandwidth (pod
    annotations) → tuning, each meta plugin declaring the capability the runtime fills in."""
    conf = bridge_conflist(network, subnets, bridge, True, agent_socket, cni_version, data_dir)
    conf["plugins"] += [
        {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "snat": True, "agentSocket": agent_socket},
        {"type": "podnet-bandwidth", "capabilities": {"bandwidth": True}, "agentSocket": agent_socket},
        {"type": "podnet-tuning", "capabilities": {"mac": True}, "agentSocket": agent_socket},
    ]
    return conf


def cluster_conflist(network: str, ipam: dict[str, Any], mtu: int = 0, agent_socket: str = DEFAULT_SOCKET,
                     cni_version: str = "1.0.0") -> dict[str, Any]:
    """The node conflist the agent writes: one `podnet` plugin per pod in ptp mode (routed, no
    bridge: cross-node traffic is plain routing) with the node's IPAM, and its portmap (hostPort)
    and bandwidth (pod annotations) sections.  No ipMasq: the agent masquerades traffic leaving
    the cluster CIDR once, for the node, so pod → pod across nodes keeps its source address."""
    pod: dict[str, Any] = {"type": "podnet", "mode": "ptp", "agentSocket": agent_socket, "ipam": ipam}
    if mtu:
        pod["mtu"] = mtu
    pod.update(portmap={"snat": True}, bandwidth={}, capabilities={"portMappings": True, "bandwidth": True})
    return {"cniVersion": cni_version, "name": network, "plugins": [pod]}


def underlay_conflist(network: str, ipam: dict[str, Any], link: str, master: str, service_cidrs: list[str],
                      agent_socket: str = DEFAULT_SOCKET, cni_version: str = "1.0.0") -> dict[str, Any]:
    """The node conflist in pod-network underlay: one `podnet` plugin per pod in macvlan (bridge
    mode) or ipvlan (l2) mode on the node's uplink — eth0 on the datacenter network with an address
    of it and the default route via its gateway — plus the leg to the node for the node's own
    addresses and the service CIDR, and the portmap section (hostPort).  No masquerade anywhere:
    the pods' addresses are routable.  No bandwidth section: eth0 has no host-side veth to shape."""
    pod: dict[str, Any] = {"type": "podnet", "mode": link, "master": master, "agentSocket": agent_socket,
                           f"{link}Mode": "bridge" if link == "macvlan" else "l2", "ipam": ipam,
                           "leg": {"routes": service_cidrs}, "portmap": {"snat": True},
                           "capabilities": {"portMappings": True}}
    return {"cniVersion": cni_version, "name": network, "plugins": [pod]}


def write_conflist(conf_dir: str, conflist: dict[str, Any], priority: int = 10) -> str:
    os.makedirs(conf_dir, exist_ok=True)
    dest = os.path.join(conf_dir, f"{priority}-{conflist['name']}.conflist")
    with open(dest + ".tmp", "w") as f:
        json.dump(conflist, f, indent=2)
        f.write("\n")
    os.replace(dest + ".tmp", dest)
    return dest
