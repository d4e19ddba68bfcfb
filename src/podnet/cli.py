"""`podnet` — install | agent | doctor | demo | ipam | node | version."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def cmd_install(a: argparse.Namespace) -> int:
    """Launchers (and optionally a lib dir and a conflist).  --host-prefix: the host's root is
    mounted there (a DaemonSet's init container); every dir given is a path on the host."""
    from . import hostlib, install
    prefix = a.host_prefix.rstrip("/")
    paths = None
    try:
        version = hostlib.host_python(a.interpreter, prefix)
        hostlib.require(version, a.interpreter)
    except (hostlib.HostPythonTooOld, FileNotFoundError, OSError) as e:
        print(f"podnet install: {e}", file=sys.stderr)
        return 1
    if a.lib_dir:
        copied, skipped = hostlib.copy_lib(prefix + a.lib_dir, version)
        print(f"lib {a.lib_dir}: {', '.join(copied)}")
        for why in skipped:
            print(f"lib {a.lib_dir}: left out {why}")
        paths = [a.lib_dir]
    for path in install.write_launchers(prefix + a.bin_dir, interpreter=a.interpreter, paths=paths):
        print(f"launcher {path[len(prefix):]}")
    if a.conf_dir and a.network:
        if not a.subnet:
            print("podnet install: --subnet is needed with --network", file=sys.stderr)
            return 2
        if a.kubernetes:
            conf = install.kubernetes_conflist(a.network, a.subnet, a.bridge, a.agent_socket, data_dir=a.data_dir)
        else:
            conf = install.bridge_conflist(a.network, a.subnet, a.bridge, not a.no_masq, a.agent_socket,
                                           data_dir=a.data_dir)
        print(f"conflist {install.write_conflist(prefix + a.conf_dir, conf)[len(prefix):]}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    if a.down:
        from .lab import remove_kept
        gone = remove_kept()
        print(f"removed {len(gone)} namespaces")
        return 0
    from .demo import run_demo
    return run_demo(pods=a.pods, keep=a.keep, nodes=a.nodes, backend=a.backend, single_node=a.single_node,
                    ipam_mode=a.ipam)


def cmd_agent(a: argparse.Namespace) -> int:
    import logging
    from .agent.server import serve
    kw = {"filename": a.log_file} if a.log_file else {"stream": sys.stderr}
    logging.basicConfig(level=a.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", **kw)
    from .dhcp.keeper import LeaseKeeper, install as install_keeper
    keeper = LeaseKeeper(a.state_dir)
    install_keeper(keeper)
    keeper.start()        # podnet-dhcp leases of running pods: renewed from now on
    routing = None
    if a.routing:
        routing = start_routing(a)
    try:
        serve(a.socket, a.request_timeout)
    finally:
        if routing is not None:
            routing.stop()
        keeper.stop()
    return 0


def start_routing(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Announce this node in the datastore (etcd, or Kubernetes Node objects), take its pod
    addresses (cluster IPAM, a leased host-local subnet, or the Node's podCIDRs), keep
    cross-node routes reconciled, and write the node's conflist once all that holds."""
    import ipaddress
    import os
    import socket as _socket
    from .agent.nodenet import NodeNetwork
    from .agent.routing import RoutingAgent
    from .net import masq, sysctl
    node = a.node or os.environ.get("NODE_NAME") or _socket.gethostname()
    if a.cni_conf_dir and not a.cluster_cidr:
        raise SystemExit("podnet agent: --cni-conf-dir needs --cluster-cidr (the pods' address space)")
    a.cluster_cidr = [c for arg in a.cluster_cidr for c in arg.split(",") if c.strip()]   # "v4,v6" from a ConfigMap
    a.etcd = [e for arg in a.etcd for e in arg.split(",") if e.strip()]
    try:
        cidrs = [ipaddress.ip_network(c) for c in a.cluster_cidr]
    except ValueError as e:
        raise SystemExit(f"podnet agent: --cluster-cidr: {e}") from None
    if a.datastore == "kubernetes":
        from .agent.kubepeers import KubePeers
        from .agent.leakgc import release_leaked

        def gc(live: set[str]) -> None:
            if a.leak_grace > 0 and net.subnets:
                release_leaked(a.ipam_data_dir or "/var/lib/cni/networks", a.network, net.subnets, live,
                               a.leak_grace)
        peers = KubePeers(node, a.kubeconfig, gc=gc, gc_interval=a.leak_gc_interval)
        underlay = a.underlay_addr or peers.internal_ip()
        if not underlay:
            raise SystemExit(f"podnet agent: node {node} has no InternalIP; give --underlay-addr")
        net = NodeNetwork(a.network, "host-local", cidrs, [], "", a.socket, conf_dir=a.cni_conf_dir or "",
                          data_dir=a.ipam_data_dir)

        def prepare() -> None:
            net.subnets = peers.my_pod_cidrs()
    else:
        from .agent.peers import EtcdPeers
        from .ipam.cluster import ClusterIpam
        from .ipam.etcdkv import EtcdKV
        if not a.etcd or not a.underlay_addr:
            raise SystemExit("podnet agent: --routing with the etcd datastore needs --etcd and --underlay-addr")
        if a.ipam_mode == "host-local" and not a.cluster_cidr:
            raise SystemExit("podnet agent: --ipam-mode host-local needs --cluster-cidr "
                             "(the CIDR node subnets come from)")
        underlay = a.underlay_addr
        tls = None
        if a.etcd_ca_file:
            from .ipam.etcdkv import TLSFiles

            def read(path: str) -> bytes | None:
                if not path:
                    return None
                with open(path, "rb") as f:
                    return f.read()
            tls = TLSFiles(read(a.etcd_ca_file) or b"", read(a.etcd_cert_file), read(a.etcd_key_file))
        ipam = ClusterIpam(EtcdKV(a.etcd, tls=tls), node, a.etcd_prefix)
        net = NodeNetwork(a.network, a.ipam_mode, cidrs, a.etcd, ipam.prefix, a.socket, a.block_size,
                          a.node_subnet_size, a.cni_conf_dir or "", a.ipam_data_dir,
                          etcd_tls={k: v for k, v in (("etcdCAFile", a.etcd_ca_file), ("etcdCertFile", a.etcd_cert_file),
                                                      ("etcdKeyFile", a.etcd_key_file)) if v})
        peers = EtcdPeers(ipam, a.lease_ttl, a.reclaim_after)

        def prepare() -> None:
            net.claim(ipam)
    if cidrs:
        masq.set_cluster_masquerade(cidrs)
        for fam in {c.version for c in cidrs}:
            sysctl.ensure("net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding", 1)

    from .agent import readiness
    readiness.not_ready(f"joining the cluster ({a.datastore} datastore)")

    def ready(agent: RoutingAgent) -> None:
        if a.cni_conf_dir:
            net.write_conflist(node, agent.pod_mtu())
        readiness.set_ready()
        announce = getattr(peers, "event", None)
        if announce is not None:
            announce("PodnetReady", f"podnet: pod network ready ({a.routing}, pod CIDRs "
                                    f"{', '.join(map(str, net.subnets))})")
    hg = RoutingAgent(peers, ipaddress.ip_address(underlay), a.routing, heartbeat=a.lease_ttl / 3,
                      interval=a.route_interval, vni=a.vxlan_vni, port=a.vxlan_port, on_ready=ready, prepare=prepare,
                      on_fail=lambda why: readiness.not_ready(f"joining the cluster ({a.datastore} datastore): {why}"))
    hg.start()
    return hg


def cmd_doctor(a: argparse.Namespace) -> int:
    from . import doctor
    findings = doctor.run_checks(a.socket, a.bin_dir)
    if a.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        print(doctor.render(findings))
    return doctor.exit_code(findings)


def cmd_health(a: argparse.Namespace) -> int:
    """For exec probes (kubelet cannot reach a unix socket with httpGet): exit 0 when the agent
    answers /healthz (or, --ready, /readyz)."""
    from .doctor import http_get_unix
    try:
        status, body = http_get_unix(a.socket, "/readyz" if a.ready else "/healthz", a.timeout)
    except (OSError, ValueError, IndexError) as e:
        print(f"podnet agent at {a.socket}: {e}", file=sys.stderr)
        return 1
    print(body.decode(errors="replace").strip())
    return 0 if status == 200 else 1


def cmd_manifests(a: argparse.Namespace) -> int:
    from .deploy import DeployConfig, render, to_yaml
    conf = DeployConfig(a.cluster_cidr, a.cluster_cidr_v6, a.backend, a.datastore, a.ipam_mode, a.etcd,
                        a.etcd_tls_secret, a.network, a.image)
    if conf.datastore == "etcd" and not conf.etcd_endpoints:
        print("podnet manifests: --datastore etcd needs --etcd", file=sys.stderr)
        return 2
    sys.stdout.write(to_yaml(render(conf)))
    return 0


def cmd_version(a: argparse.Namespace) -> int:
    from .cni.version import SUPPORTED
    print(json.dumps({"podnet": __version__, "cniVersions": list(SUPPORTED)}) if a.json
          else f"podnet {__version__} (CNI {', '.join(SUPPORTED)})")
    return 0


def parser() -> argparse.ArgumentParser:
    from .install import INTERPRETER
    from .launcher import DEFAULT_SOCKET
    p = argparse.ArgumentParser(prog="podnet", description="podnet CNI plugins and node agent")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="write launchers (and a conflist) for a node")
    i.add_argument("--bin-dir", default="/opt/cni/bin")
    i.add_argument("--conf-dir")
    i.add_argument("--network")
    i.add_argument("--subnet", action="append", default=[])
    i.add_argument("--bridge", default="podnet0")
    i.add_argument("--no-masq", action="store_true")
    i.add_argument("--kubernetes", action="store_true",
                   help="the Kubernetes chain: bridge, portmap, bandwidth, tuning (with capabilities)")
    i.add_argument("--data-dir")
    i.add_argument("--agent-socket", default=DEFAULT_SOCKET)
    i.add_argument("--interpreter", default=INTERPRETER, help="the host's Python the launchers run with")
    i.add_argument("--lib-dir", help="copy podnet and its plugin libraries here for the host's Python "
                                     "(e.g. /opt/podnet); without it the launchers use this install's paths")
    i.add_argument("--host-prefix", default="", help="where the host's root is mounted (in a container)")
    i.set_defaults(fn=cmd_install)
    d = sub.add_parser("demo", help="a virtual cluster of node namespaces, pods on every node, all pairs checked")
    d.add_argument("--nodes", type=int, default=3)
    d.add_argument("--pods", "--pods-per-node", dest="pods", type=int, default=2)
    d.add_argument("--backend", choices=("vxlan", "host-gw"), default="vxlan")
    d.add_argument("--ipam", choices=("cluster", "host-local"), default="cluster",
                   help="cluster IPAM blocks in etcd, or a host-local subnet per node")
    d.add_argument("--keep", action="store_true")
    d.add_argument("--down", action="store_true", help="remove a lab kept with --keep")
    d.add_argument("--single-node", action="store_true",
                   help="one node: pods with eth0 on a bridge and net1 on a macvlan underlay")
    d.set_defaults(fn=cmd_demo)
    ag = sub.add_parser("agent", help="serve CNI requests on a unix socket (the node agent)")
    ag.add_argument("--socket", default=DEFAULT_SOCKET)
    ag.add_argument("--state-dir", default="/var/lib/podnet")
    ag.add_argument("--log-file")
    ag.add_argument("--log-level", default="INFO")
    ag.add_argument("--request-timeout", type=float, default=50.0)
    ag.add_argument("--routing", choices=("host-gw", "vxlan"), help="program cross-node routes from the cluster IPAM")
    ag.add_argument("--vxlan-vni", type=int, default=1)
    ag.add_argument("--vxlan-port", type=int, default=8472)
    ag.add_argument("--node", help="this node's name (default: $NODE_NAME, else the hostname)")
    ag.add_argument("--datastore", choices=("etcd", "kubernetes"), default="etcd",
                    help="where nodes and pod CIDRs live: podnet's etcd, or the Kubernetes API (Node objects)")
    ag.add_argument("--kubeconfig", default="", help="kubernetes datastore: default in-cluster, then $KUBECONFIG")
    ag.add_argument("--leak-grace", type=float, default=600.0,
                    help="kubernetes datastore: release a host-local lease no pod of this node holds once it "
                         "is this many seconds old (0: never)")
    ag.add_argument("--leak-gc-interval", type=float, default=60.0, help="seconds between leak checks")
    ag.add_argument("--etcd", action="append", default=[], help="etcd endpoint (repeatable)")
    ag.add_argument("--etcd-prefix", default="/podnet/")
    ag.add_argument("--etcd-ca-file", default="", help="TLS to etcd: the CA that signed its certificate")
    ag.add_argument("--etcd-cert-file", default="", help="TLS client certificate (with --etcd-key-file)")
    ag.add_argument("--etcd-key-file", default="")
    ag.add_argument("--underlay-addr", help="this node's address other nodes route pod traffic to "
                                             "(kubernetes datastore: default the Node's InternalIP)")
    ag.add_argument("--lease-ttl", type=int, default=10)
    ag.add_argument("--route-interval", type=float, default=10.0,
                    help="seconds between full passes (changes in etcd trigger a pass at once)")
    ag.add_argument("--cluster-cidr", action="append", default=[],
                    help="the pods' address space (repeatable: one per family); traffic leaving it is masqueraded")
    ag.add_argument("--ipam-mode", choices=("cluster", "host-local"), default="cluster",
                    help="cluster: podnet-cluster-ipam blocks; host-local: a subnet per node (flannel style)")
    ag.add_argument("--block-size", type=int, default=26, help="cluster mode: the IPAM block size")
    ag.add_argument("--node-subnet-size", type=int, default=24, help="host-local mode: each node's subnet size")
    ag.add_argument("--cni-conf-dir", help="write the node's conflist here once the node is ready")
    ag.add_argument("--network", default="podnet", help="the network name in the conflist")
    ag.add_argument("--ipam-data-dir", default="", help="host-local mode: where leases are kept "
                                                          "(default host-local's /var/lib/cni/networks)")
    ag.add_argument("--reclaim-after", type=float, default=300.0,
                    help="seconds a node must stay dead before this agent takes back its blocks (0: never)")
    ag.set_defaults(fn=cmd_agent)
    dr = sub.add_parser("doctor", help="check the agent, its socket, the launchers and the tools")
    dr.add_argument("--socket", default=DEFAULT_SOCKET)
    dr.add_argument("--bin-dir", default="/opt/cni/bin")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(fn=cmd_doctor)
    from .ipam_cli import add_parser as add_ipam_parser
    add_ipam_parser(sub)
    from .node_cli import add_parser as add_node_parser
    add_node_parser(sub)
    from .dhcp_cli import add_parser as add_dhcp_parser
    add_dhcp_parser(sub)
    from .deploy import DEFAULT_IMAGE
    m = sub.add_parser("manifests", help="print the Kubernetes manifests (kubectl apply -f -)")
    m.add_argument("--cluster-cidr", default="10.244.0.0/16")
    m.add_argument("--cluster-cidr-v6", default="")
    m.add_argument("--backend", choices=("vxlan", "host-gw"), default="vxlan")
    m.add_argument("--datastore", choices=("kubernetes", "etcd"), default="kubernetes")
    m.add_argument("--ipam-mode", choices=("cluster", "host-local"), default="cluster")
    m.add_argument("--etcd", default="", help="etcd endpoints, comma-separated (etcd datastore)")
    m.add_argument("--etcd-tls-secret", default="", help="Secret with ca.crt, tls.crt, tls.key (etcd datastore)")
    m.add_argument("--network", default="podnet")
    m.add_argument("--image", default=DEFAULT_IMAGE)
    m.set_defaults(fn=cmd_manifests)
    h = sub.add_parser("health", help="probe the agent (exit 0: alive; --ready: the node can network pods)")
    h.add_argument("--socket", default=DEFAULT_SOCKET)
    h.add_argument("--ready", action="store_true")
    h.add_argument("--timeout", type=float, default=3.0)
    h.set_defaults(fn=cmd_health)
    v = sub.add_parser("version")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    return int(a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
