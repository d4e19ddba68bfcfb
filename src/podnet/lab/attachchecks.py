"""Pods with several networks on the kubelet lab (NetworkAttachmentDefinitions run by podnet,
issue 32) — shared by `podnet demo --kubelet --networks` and the kubelet tier.

  net1  macvlan on each node's fabric uplink (up0): the datacenter network, 10.97.0.0/24
  net2  host-device: a NIC of its own per node (`st0`, a veth whose other end is on a second
        bridge in the fabric namespace: the storage network, 10.98.0.0/24) moved into the pod —
        what a dedicated port or an SR-IOV VF is to a real node
"""
from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from . import kubechecks as kc
from .cluster import FABRIC_NET, netns_ip

NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
STORAGE_NET = "10.98.0"                 # the storage network: .254 the storage host, pods' net2 from .11
STORAGE_BRIDGE = "stbr"
NODE_STORAGE_NIC = "st0"                # each node's spare NIC on the storage network


def nad(name: str, namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    """A NetworkAttachmentDefinition holding `config` (its spec.config is a JSON string, as Multus has it)."""
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"config": json.dumps(config)}}


def fabric_macvlan(name: str, first: int, uplink: str = "up0") -> dict[str, Any]:
    """macvlan on the node's fabric uplink; host-local addresses .first … .first+7 of the fabric
    (host-local's files are per node: each NAD gives each node's pods a disjoint range only when
    one node uses it — the tests and the demo place pods accordingly)."""
    return {"cniVersion": "1.0.0", "name": name, "type": "podnet-macvlan", "master": uplink, "mode": "bridge",
            "ipam": {"type": "podnet-host-local", "ranges": [[{"subnet": f"{FABRIC_NET}.0/24",
                                                               "rangeStart": f"{FABRIC_NET}.{first}",
                                                               "rangeEnd": f"{FABRIC_NET}.{first + 7}"}]]}}


def static_macvlan(name: str, uplink: str = "up0") -> dict[str, Any]:
    """macvlan whose address and MAC the pod's annotation gives (`ips`, `mac` capabilities)."""
    return {"cniVersion": "1.0.0", "name": name, "type": "podnet-macvlan", "master": uplink, "mode": "bridge",
            "capabilities": {"ips": True, "mac": True}, "ipam": {"type": "podnet-static"}}


def storage_device(name: str) -> dict[str, Any]:
    """host-device: the node's storage NIC moved into the pod, its address from the annotation."""
    return {"cniVersion": "1.0.0", "name": name, "type": "podnet-host-device", "device": NODE_STORAGE_NIC,
            "capabilities": {"ips": True}, "ipam": {"type": "podnet-static"}}


def add_storage_network(lab: Any) -> str:
    """A second network: a bridge in the fabric namespace with the storage host on .254, and one
    spare NIC `st0` (down, no address) on every node.  Returns the storage host's address."""
    netns_ip(lab.fab, "link", "add", STORAGE_BRIDGE, "type", "bridge")
    netns_ip(lab.fab, "addr", "add", f"{STORAGE_NET}.254/24", "dev", STORAGE_BRIDGE)
    netns_ip(lab.fab, "link", "set", STORAGE_BRIDGE, "up")
    for i, node in enumerate(lab.nodes):
        netns_ip(lab.fab, "link", "add", f"st{i + 1}", "type", "veth", "peer", "name", NODE_STORAGE_NIC, "netns", node)
        netns_ip(lab.fab, "link", "set", f"st{i + 1}", "master", STORAGE_BRIDGE, "up")
    return f"{STORAGE_NET}.254"


def node_has_link(lab: Any, i: int, name: str) -> bool:
    return subprocess.run(["ip", "-n", lab.nodes[i], "link", "show", name], capture_output=True).returncode == 0


def pod_with_networks(name: str, image: str, node: str, networks: str | list[dict[str, Any]]) -> dict[str, Any]:
    """The probe server pinned to `node`, asking for `networks` (the text form, or the JSON list)."""
    doc = kc.host_port_pod(name, image, node, 0)
    doc["metadata"]["annotations"] = {NETWORKS: networks if isinstance(networks, str) else json.dumps(networks)}
    doc["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    return doc


def wait_running(lab: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    """The Pod once Running with an IP (what kubectl wait would give)."""
    deadline = time.monotonic() + timeout
    while True:
        p = lab.get("pod", name)
        if p["status"].get("phase") == "Running" and p["status"].get("podIP"):
            return dict(p)
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {name} not Running after {timeout:.0f}s: {p['status']}")
        time.sleep(0.5)


def network_status(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod's `network-status` annotation, parsed ([] when podnet wrote none)."""
    raw = pod["metadata"].get("annotations", {}).get(STATUS)
    return list(json.loads(raw)) if raw else []


def in_pod(lab: Any, name: str, *argv: str) -> str:
    return str(lab.kubectl("exec", name, "--", *argv, check=False, timeout=60))


def probe_from(lab: Any, name: str, proto: str, host: str, port: int, source: str = "", path: str = "") -> str:
    """`pnprobe probe` inside pod `name` (bound to `source`, GET `path`); its answer or ""."""
    argv = ["pnprobe", "probe", "-t", "3", *(["-s", source] if source else []), *(["-p", path] if path else []),
            proto, host, str(port)]
    return in_pod(lab, name, *argv).strip()
