"""`podnet install` (launchers, a lib dir for the host's Python, a conflist) and `podnet manifests`
(the Kubernetes objects that install podnet cluster-wide)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..wire import DEFAULT_SOCKET


def add_parsers(sub: Any) -> None:
    from ..install import INTERPRETER
    from ..manifests import DEFAULT_IMAGE
    i = sub.add_parser("install", help="write launchers (and a conflist) for a node")
    i.add_argument("--bin-dir", default="/opt/cni/bin")
    i.add_argument("--conf-dir")
    i.add_argument("--network")
    i.add_argument("--subnet", action="append", default=[])
    i.add_argument("--bridge", default="podnet0")
    i.add_argument("--no-masq", action="store_true")
    i.add_argument("--kubernetes", action="store_true",
                   help="a Kubernetes node's conflist: the one-exec `podnet` plugin (bridge + portmap, bandwidth, "
                        "tuning sections, with capabilities)")
    i.add_argument("--kubernetes-chain", action="store_true",
                   help="the same as four plugins: bridge, portmap, bandwidth, tuning")
    i.add_argument("--data-dir")
    i.add_argument("--agent-socket", default=DEFAULT_SOCKET)
    i.add_argument("--interpreter", default=INTERPRETER, help="the host's Python the launchers run with")
    i.add_argument("--lib-dir", help="copy podnet and its plugin libraries here for the host's Python "
                                     "(e.g. /opt/podnet); without it the launchers use this install's paths")
    i.add_argument("--kubernetes-node", action="store_true",
                   help="also what a Kubernetes node's runtime needs beside podnet: a `loopback` plugin if none")
    i.add_argument("--host-prefix", default="", help="where the host's root is mounted (in a container)")
    i.set_defaults(fn=cmd_install)
    m = sub.add_parser("manifests", help="print the Kubernetes manifests (kubectl apply -f -)")
    m.add_argument("--cluster-cidr", default="10.244.0.0/16")
    m.add_argument("--cluster-cidr-v6", default="")
    m.add_argument("--backend", choices=("vxlan", "host-gw", "bgp"), default="vxlan")
    m.add_argument("--bgp-peers", default="", help="bgp: external peers ADDR/AS[/PASSWORD], comma-separated")
    m.add_argument("--no-nat", action="store_true", help="bgp: the network routes the pod CIDRs: no masquerade")
    m.add_argument("--datastore", choices=("kubernetes", "etcd"), default="kubernetes")
    m.add_argument("--ipam-mode", choices=("cluster", "host-local", "neutron"), default="cluster",
                   help="neutron (with --pod-network underlay): each pod a Neutron port (--neutron-*)")
    m.add_argument("--etcd", default="", help="etcd endpoints, comma-separated (etcd datastore)")
    m.add_argument("--etcd-tls-secret", default="", help="Secret with ca.crt, tls.crt, tls.key (etcd datastore)")
    m.add_argument("--network", default="podnet")
    m.add_argument("--image", default=DEFAULT_IMAGE)
    m.add_argument("--no-network-policy", action="store_true", help="kubernetes datastore: do not enforce NetworkPolicy")
    m.add_argument("--encryption", choices=("wireguard",), default="",
                   help="encrypt pod traffic between nodes (adds the wireguard-go container)")
    m.add_argument("--pod-network", choices=("routed", "underlay"), default="routed",
                   help="underlay: eth0 a macvlan/ipvlan child of the node's NIC on the datacenter network, a "
                        "leg to the node (needs --datastore etcd; --cluster-cidr is the pods' pool in the subnet)")
    m.add_argument("--underlay-link", choices=("macvlan", "ipvlan"), default="macvlan")
    m.add_argument("--underlay-interface", default="", help="underlay: the NIC (default: the one holding the node's IP)")
    m.add_argument("--underlay-subnet", default="", help="underlay: the datacenter subnet(s), comma-separated")
    m.add_argument("--underlay-gateway", default="", help="underlay: the datacenter gateway(s), comma-separated")
    m.add_argument("--service-cidr", default="10.96.0.0/12", help="underlay: the Services' CIDR (through the node)")
    m.add_argument("--neutron-url", default="", help="ipam-mode neutron: the Neutron endpoint")
    m.add_argument("--neutron-auth-url", default="", help="ipam-mode neutron: keystone v3 (with --neutron-credentials-secret)")
    m.add_argument("--neutron-credentials-secret", default="", help="a Secret holding credentials.json")
    m.add_argument("--neutron-network", default="", help="ipam-mode neutron: the VMs' network (ID or name)")
    m.add_argument("--neutron-address-pairs", choices=("cidr", "per-ip", "none"), default="cidr")
    m.add_argument("--neutron-pool-size", type=int, default=0)
    m.add_argument("--relay-replicas", type=int, default=0,
                   help="podnet relays the agents list and watch through (a few hundred nodes each; 0: none)")
    m.add_argument("--relay-cluster-ip", default="", help="the relay Service's ClusterIP (fixed: agents reach it "
                                                          "before cluster DNS runs)")
    m.add_argument("--relay-tls-secret", default="podnet-relay-tls",
                   help="Secret with the relay's tls.crt, tls.key (a SAN for the ClusterIP) and ca.crt")
    m.set_defaults(fn=cmd_manifests)


def cmd_install(a: argparse.Namespace) -> int:
    """Launchers (and optionally a lib dir and a conflist).  --host-prefix: the host's root is
    mounted there (a DaemonSet's init container); every dir given is a path on the host."""
    from .. import conflists, install
    prefix = a.host_prefix.rstrip("/")
    paths = None
    try:
        version = install.host_python(a.interpreter, prefix)
        install.require(version, a.interpreter)
    except (install.HostPythonTooOld, FileNotFoundError, OSError) as e:
        print(f"podnet install: {e}", file=sys.stderr)
        return 1
    if a.lib_dir:
        copied, skipped = install.copy_lib(prefix + a.lib_dir, version)
        print(f"lib {a.lib_dir}: {', '.join(copied)}")
        for why in skipped:
            print(f"lib {a.lib_dir}: left out {why}")
        paths = [a.lib_dir]
    for path in install.write_launchers(prefix + a.bin_dir, interpreter=a.interpreter, paths=paths):
        print(f"launcher {path[len(prefix):]}")
    if a.kubernetes_node:
        loopback = install.write_loopback_if_missing(prefix + a.bin_dir, interpreter=a.interpreter, paths=paths)
        print(f"launcher {loopback[len(prefix):]} (the runtime calls `loopback` for every pod; there was none)"
              if loopback else "loopback: the node's own kept")
    if a.conf_dir and a.network:
        if not a.subnet:
            print("podnet install: --subnet is needed with --network", file=sys.stderr)
            return 2
        if a.kubernetes or a.kubernetes_chain:
            make = conflists.kubernetes_chain_conflist if a.kubernetes_chain else conflists.kubernetes_conflist
            conf = make(a.network, a.subnet, a.bridge, a.agent_socket, data_dir=a.data_dir)
        else:
            conf = conflists.bridge_conflist(a.network, a.subnet, a.bridge, not a.no_masq, a.agent_socket,
                                           data_dir=a.data_dir)
        print(f"conflist {conflists.write_conflist(prefix + a.conf_dir, conf)[len(prefix):]}")
    return 0


def cmd_manifests(a: argparse.Namespace) -> int:
    from ..manifests import DeployConfig, render, to_yaml
    conf = DeployConfig(a.cluster_cidr, a.cluster_cidr_v6, a.backend, a.datastore, a.ipam_mode, a.etcd,
                        a.etcd_tls_secret, a.network, a.image, not a.no_network_policy, a.encryption,
                        a.bgp_peers, a.no_nat, a.pod_network, a.underlay_link, a.underlay_interface,
                        a.underlay_subnet, a.underlay_gateway, a.service_cidr,
                        neutron_url=a.neutron_url, neutron_auth_url=a.neutron_auth_url,
                        neutron_credentials_secret=a.neutron_credentials_secret, neutron_network=a.neutron_network,
                        neutron_address_pairs=a.neutron_address_pairs, neutron_pool_size=a.neutron_pool_size,
                        relay_replicas=a.relay_replicas, relay_cluster_ip=a.relay_cluster_ip,
                        relay_tls_secret=a.relay_tls_secret)
    if conf.relay_replicas < 0 or (conf.relay_replicas and not conf.relay_cluster_ip):
        print("podnet manifests: --relay-replicas needs --relay-cluster-ip (a free address of the Service CIDR)",
              file=sys.stderr)
        return 2
    if conf.ipam_mode == "neutron" and (conf.pod_network != "underlay" or not conf.neutron_network
                                        or not (conf.neutron_url or conf.neutron_auth_url)):
        print("podnet manifests: --ipam-mode neutron needs --pod-network underlay, --neutron-network and "
              "--neutron-url (or --neutron-auth-url with --neutron-credentials-secret)", file=sys.stderr)
        return 2
    if conf.datastore == "etcd" and not conf.etcd_endpoints:
        print("podnet manifests: --datastore etcd needs --etcd", file=sys.stderr)
        return 2
    if conf.pod_network == "underlay" and (conf.datastore != "etcd" or not conf.underlay_subnet):
        print("podnet manifests: --pod-network underlay needs --datastore etcd (a Node's podCIDR is not on the "
              "datacenter subnet) and --underlay-subnet", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(render(conf)))
    return 0
