"""`podnet demo`: a virtual cluster in namespaces, pods on every node, every pair checked."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import non_negative, positive


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("demo", help="a virtual cluster of node namespaces, pods on every node, all pairs checked")
    d.add_argument("--nodes", type=positive, default=3)
    d.add_argument("--pods", "--pods-per-node", dest="pods", type=non_negative, default=2)
    d.add_argument("--backend", choices=("vxlan", "host-gw", "bgp"), default="vxlan",
                   help="bgp: BIRD on every node, a top-of-rack router and an external host reached without NAT")
    d.add_argument("--ipam", choices=("cluster", "host-local", "neutron"), default="cluster",
                   help="cluster IPAM blocks in etcd, or a host-local subnet per node; neutron (--kubelet "
                        "--pod-network underlay): a real Neutron on the fabric, each pod a Neutron port")
    d.add_argument("--datastore", choices=("etcd", "kubernetes"), default="etcd",
                   help="kubernetes: a real control plane (kube-apiserver, controller manager, scheduler) whose "
                        "controller manager gives each node its podCIDR")
    d.add_argument("--policy", action="store_true",
                   help="with --datastore kubernetes: NetworkPolicy — namespaces x, y, z with pods a, b, c; deny-all, "
                        "then allow rules, the probed matrix after each (PASS only if every cell matches the model)")
    d.add_argument("--encryption", choices=("wireguard",), default="",
                   help="encrypt pod traffic between nodes; the demo captures the fabric and shows no plaintext crossed")
    d.add_argument("--kubelet", action="store_true",
                   help="real nodes: kubelet + containerd on every node, podnet installed by its own DaemonSet "
                        "(kubectl apply), a Deployment, a ClusterIP Service (kube-proxy nftables) and a hostPort checked")
    d.add_argument("--pod-network", choices=("routed", "underlay"), default="routed",
                   help="--kubelet: underlay puts pods on the fabric (macvlan + a leg to the node)")
    d.add_argument("--ip-family", choices=("ipv4", "dual", "ipv6"), default="ipv4",
                   help="--kubelet: dual puts the fabric, pods and Services in both families")
    d.add_argument("--networks", action="store_true",
                   help="--kubelet: pods with eth0, net1 (macvlan on the fabric) and net2 (a node's NIC by host-device), "
                        "from NetworkAttachmentDefinitions; prints their network-status")
    d.add_argument("--keep", action="store_true")
    d.add_argument("--down", action="store_true", help="remove a lab kept with --keep")
    d.add_argument("--single-node", action="store_true",
                   help="one node: pods with eth0 on a bridge and net1 on a macvlan underlay")
    d.set_defaults(fn=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    if a.down:
        from ..lab import remove_kept
        gone = remove_kept()
        print(f"removed {len(gone)} namespaces")
        return 0
    if a.policy and a.datastore != "kubernetes":
        print("podnet demo: --policy needs --datastore kubernetes (policies, pods and namespaces are API objects)",
              file=sys.stderr)
        return 2
    if a.ip_family == "ipv6":
        print("podnet demo: --ip-family ipv6 is not built: an IPv6-only lab needs every node, etcd, the API "
              "server's advertise address and the fabric's routes in IPv6 (the lab's control plane is IPv4); "
              "use --ip-family dual", file=sys.stderr)
        return 2
    if (a.pod_network != "routed" or a.ip_family != "ipv4" or a.networks) and not a.kubelet:
        print("podnet demo: --pod-network, --ip-family and --networks need --kubelet", file=sys.stderr)
        return 2
    if a.ipam == "neutron" and (not a.kubelet or a.pod_network != "underlay"):
        print("podnet demo: --ipam neutron needs --kubelet --pod-network underlay", file=sys.stderr)
        return 2
    if a.kubelet:
        from ..lab import ends_cleanly_on_signals
        with ends_cleanly_on_signals():
            if a.networks:
                from ..networks_demo import run_networks_demo
                return run_networks_demo(a.nodes, a.keep)
            if a.pod_network == "underlay":
                from ..underlay_demo import run_underlay_demo
                return run_underlay_demo(a.nodes, a.keep, ipam="neutron" if a.ipam == "neutron" else "cluster")
            from ..kubelet_demo import run_kubelet_demo
            return run_kubelet_demo(a.nodes, a.backend, a.encryption, a.keep, a.ip_family)
    from ..demo import DemoSpec, run_demo
    return run_demo(DemoSpec(a.nodes, a.pods, a.backend, a.ipam, a.datastore, a.keep, a.policy, a.encryption),
                    single_node=a.single_node)
