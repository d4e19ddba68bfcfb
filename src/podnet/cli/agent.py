"""`podnet agent` (the node agent), `podnet health` (exec probes), `podnet doctor`.

The agent's flags are NodeConfig's settings (agent/config.py); `--config FILE` reads the same
settings from YAML/JSON and any flag given on the command line wins over the file."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..wire import DEFAULT_SOCKET


def _flag_bool(text: str) -> bool:
    low = text.lower()
    if low not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return low in ("true", "yes", "1", "on")


# flag → argparse keywords (defaults live in NodeConfig; shown in --help from there)
AGENT_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--socket", {}),
    ("--state-dir", {}),
    ("--log-file", {}),
    ("--log-level", {}),
    ("--request-timeout", {"type": float}),
    ("--routing", {"help": "program cross-node routes with this backend (host-gw, vxlan, bgp)"}),
    ("--encryption", {"help": "wireguard: encrypt pod traffic between nodes (kernel WireGuard, else wireguard-go)"}),
    ("--wireguard-port", {"type": int, "help": "the WireGuard device's UDP port"}),
    ("--wireguard-run-dir", {"help": "wireguard-go's socket directory when not /var/run/wireguard (it then runs "
                                     "in a private mount namespace: several nodes on one host)"}),
    ("--wireguard-go", {"help": "agent: the agent runs wireguard-go itself; external: another process does "
                                "(the DaemonSet's wireguard container) and the agent waits for its socket"}),
    ("--bgp-as", {"type": int, "help": "routing bgp: this node's AS number"}),
    ("--bgp-route-reflector", {"type": _flag_bool, "nargs": "?", "const": True,
                               "help": "routing bgp: this node is a route reflector (the others then peer only "
                                       "with reflectors)"}),
    ("--bgp-peers", {"action": "append", "help": "routing bgp: an external peer ADDR/AS[/PASSWORD] (repeatable, "
                                                 "or comma-separated), e.g. the top-of-rack router"}),
    ("--bgp-hold-time", {"type": int, "help": "routing bgp: seconds without a keepalive before a session is down"}),
    ("--bgp-graceful-restart-time", {"type": int, "help": "routing bgp: seconds peers keep a restarting node's routes"}),
    ("--drain-on-stop", {"type": _flag_bool, "nargs": "?", "const": True,
                         "help": "routing bgp: on SIGTERM shut BIRD down so peers withdraw this node's routes at once "
                                 "(default: BIRD keeps running through an agent restart)"}),
    ("--bird", {"help": "routing bgp: agent: the agent runs BIRD itself; external: another process does (the "
                        "DaemonSet's bird container, started once the agent has written its config) and the agent "
                        "waits for its socket"}),
    ("--no-nat-cidr", {"action": "append", "help": "a cluster CIDR the network routes natively (BGP): its pods' "
                                                   "traffic leaves with their own address (repeatable)"}),
    ("--vxlan-vni", {"type": int}),
    ("--vxlan-port", {"type": int}),
    ("--trace-port", {"type": int, "help": "serve GET /trace/hop on the underlay address (podnet trace); 0: off"}),
    ("--node", {"help": "this node's name (default: $NODE_NAME, else the hostname)"}),
    ("--datastore", {"help": "where nodes and pod CIDRs live: podnet's etcd, or the Kubernetes API (Node objects)"}),
    ("--kubeconfig", {"help": "kubernetes datastore: default in-cluster, then $KUBECONFIG"}),
    ("--relay", {"help": "a podnet relay's URL (podnet relay): the cluster-wide lists and watches (Pods, Namespaces, "
                         "Nodes, policies) come from it, everything else from the API server"}),
    ("--relay-ca", {"help": "the CA certificate of the relay's serving certificate (default: the API server's)"}),
    ("--leak-grace", {"type": float, "help": "kubernetes datastore: release a host-local lease no pod of this "
                                             "node holds once it is this many seconds old (0: never)"}),
    ("--leak-gc-interval", {"type": float, "help": "seconds between leak checks"}),
    ("--watch-timeout", {"type": int, "help": "kubernetes datastore: seconds after which the API server ends "
                                              "a watch (it is resumed from the last version seen)"}),
    ("--network-policy", {"type": _flag_bool, "nargs": "?", "const": True,
                          "help": "kubernetes datastore: enforce NetworkPolicy for this node's pods (nftables table "
                                  "inet podnet_policy); --network-policy=false turns it off and removes the table"}),
    ("--attachments", {"type": _flag_bool, "nargs": "?", "const": True,
                       "help": "run the NetworkAttachmentDefinitions a pod's k8s.v1.cni.cncf.io/networks annotation "
                               "names on its net1, net2, … (needs the API server)"}),
    ("--etcd", {"action": "append", "help": "etcd endpoint (repeatable, or comma-separated)"}),
    ("--etcd-prefix", {}),
    ("--etcd-ca-file", {"help": "TLS to etcd: the CA that signed its certificate"}),
    ("--etcd-cert-file", {"help": "TLS client certificate (with --etcd-key-file)"}),
    ("--etcd-key-file", {}),
    ("--underlay-addr", {"help": "this node's address other nodes route pod traffic to "
                                 "(kubernetes datastore: default the Node's InternalIP)"}),
    ("--lease-ttl", {"type": int}),
    ("--route-interval", {"type": float, "help": "seconds between full passes (datastore changes trigger a pass at once)"}),
    ("--pod-network", {"help": "routed: a veth to the node, routes or tunnels between nodes; underlay: eth0 a "
                               "macvlan/ipvlan child of the node's NIC on the datacenter network, a leg to the node"}),
    ("--underlay-interface", {"help": "underlay: the NIC pods hang off (default: the one holding underlay-addr)"}),
    ("--underlay-link", {"help": "underlay: macvlan or ipvlan"}),
    ("--underlay-subnet", {"action": "append", "help": "underlay: the datacenter subnet pods are on (one per family)"}),
    ("--underlay-gateway", {"action": "append", "help": "underlay: the datacenter gateway (the pods' default route)"}),
    ("--service-cidr", {"action": "append", "help": "underlay: the Services' CIDR, routed through the node"}),
    ("--cluster-cidr", {"action": "append", "help": "the pods' address space (repeatable or comma-separated: one per "
                                                    "family); traffic leaving it is masqueraded"}),
    ("--ipam-mode", {"help": "cluster: podnet-cluster-ipam blocks; host-local: a subnet per node (flannel style)"}),
    ("--block-size", {"type": int, "help": "cluster mode: the IPAM block size"}),
    ("--node-subnet-size", {"type": int, "help": "host-local mode: each node's subnet size"}),
    ("--cni-conf-dir", {"help": "write the node's conflist here once the node is ready"}),
    ("--network", {"help": "the network name in the conflist"}),
    ("--ipam-data-dir", {"help": "host-local mode: where leases are kept (default host-local's /var/lib/cni/networks)"}),
    ("--reclaim-after", {"type": float, "help": "seconds a node must stay dead before this agent takes back its "
                                                "blocks (0: never)"}),
]


def add_parsers(sub: Any) -> None:
    from ..agent.config import NodeConfig
    defaults = NodeConfig()
    ag = sub.add_parser("agent", help="serve CNI requests on a unix socket (the node agent)")
    ag.add_argument("--config", default="", help="settings file (YAML or JSON, keys = these flags' names); "
                                                 "flags given here win")
    for flag, kw in AGENT_FLAGS:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        help_text = kw.pop("help", "")
        if default not in ("", [], None):
            help_text = f"{help_text} (default {default})".strip()
        ag.add_argument(flag, default=argparse.SUPPRESS, help=help_text or None, **kw)
    ag.set_defaults(fn=cmd_agent)

    dr = sub.add_parser("doctor", help="check the agent, its socket, the launchers and the tools")
    dr.add_argument("--socket", default=DEFAULT_SOCKET)
    dr.add_argument("--bin-dir", default="/opt/cni/bin")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(fn=cmd_doctor)

    h = sub.add_parser("health", help="probe the agent (exit 0: alive; --ready: the node can network pods)")
    h.add_argument("--socket", default=DEFAULT_SOCKET)
    h.add_argument("--ready", action="store_true")
    h.add_argument("--timeout", type=float, default=3.0)
    h.set_defaults(fn=cmd_health)


def agent_config(a: argparse.Namespace) -> Any:
    """The NodeConfig these arguments describe (file, then flags)."""
    from ..agent.config import NodeConfig
    given = {k: v for k, v in vars(a).items() if k not in ("fn", "cmd", "config")}
    return NodeConfig.load(a.config, given)


def cmd_agent(a: argparse.Namespace) -> int:
    from ..agent.config import ConfigError
    from ..agent.node import run
    try:
        cfg = agent_config(a)
        return run(cfg)
    except ConfigError as e:
        print(f"podnet agent: {e}", file=sys.stderr)
        return 2


def cmd_doctor(a: argparse.Namespace) -> int:
    from .. import doctor
    findings = doctor.run_checks(a.socket, a.bin_dir)
    if a.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        print(doctor.render(findings))
    return doctor.exit_code(findings)


def cmd_health(a: argparse.Namespace) -> int:
    """For exec probes (kubelet cannot reach a unix socket with httpGet): exit 0 when the agent
    answers /healthz (or, --ready, /readyz)."""
    from ..wire import http_get_unix
    try:
        status, body = http_get_unix(a.socket, "/readyz" if a.ready else "/healthz", a.timeout)
    except (OSError, ValueError, IndexError) as e:
        print(f"podnet agent at {a.socket}: {e}", file=sys.stderr)
        return 1
    print(body.decode(errors="replace").strip())
    return 0 if status == 200 else 1
