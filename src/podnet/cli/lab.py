"""`podnet lab up|status|exec|image-load|kubectl|down`: a throwaway multi-node cluster on this machine
(as people use kind) — node namespaces on a fabric, etcd or a real Kubernetes control plane, an agent
per node, pods; with --kubelet real nodes (kubelet, containerd, kube-proxy) and podnet installed by its
DaemonSet.  Several labs can live side by side under different names; without --name a command acts
on the only one.  The lab outlives `lab up`: its state is kept in STATE_DIR/<name>.json."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .common import non_negative, positive, table

STATE_DIR = "/run/podnet-lab"          # = lab.cluster.STATE_DIR (not imported: the CLI starts without the lab)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("lab", help="a throwaway multi-node cluster on this machine (up, status, exec, down)")
    lp = p.add_subparsers(dest="lab_cmd", required=True)
    up = lp.add_parser("up", help="build a lab and leave it running")
    up.add_argument("--nodes", type=positive, default=3)
    up.add_argument("--pods-per-node", type=non_negative, default=2)
    up.add_argument("--backend", choices=("vxlan", "host-gw", "bgp"), default="vxlan")
    up.add_argument("--ipam", choices=("cluster", "host-local", "neutron"), default="cluster",
                    help="etcd datastore: cluster IPAM blocks, or a host-local subnet per node; neutron (--kubelet "
                         "--pod-network underlay): a real Neutron on the fabric, each pod a port")
    up.add_argument("--datastore", choices=("etcd", "kubernetes"), default="etcd",
                    help="kubernetes: a real control plane (kube-apiserver, controller manager, scheduler)")
    up.add_argument("--encryption", choices=("wireguard",), default="",
                    help="encrypt pod traffic between nodes (wireguard-go per node)")
    up.add_argument("--kubelet", action="store_true",
                    help="real nodes: containerd, kubelet and kube-proxy on every node, podnet installed by its "
                         "own DaemonSet (kubectl apply), images built here (no registry)")
    up.add_argument("--pod-network", choices=("routed", "underlay"), default="routed",
                    help="--kubelet: underlay puts pods on the fabric (macvlan + a leg to the node, addresses from "
                         "the lab's etcd)")
    up.add_argument("--ip-family", choices=("ipv4", "dual", "ipv6"), default="ipv4",
                    help="--kubelet: dual puts the fabric, pods and Services in both families")
    up.add_argument("--name", default="")
    up.set_defaults(fn=cmd_up)
    st = lp.add_parser("status", help="nodes, pods, the admin kubeconfig, the etcd endpoint")
    st.add_argument("--name", default="")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)
    ex = lp.add_parser("exec", help="run a command in a node's or a pod's network namespace")
    ex.add_argument("--name", default="")
    ex.add_argument("target", help="a node (n1), a pod (its name in `podnet lab status`), fabric, or with "
                                   "--backend bgp tor (the top-of-rack router) and ext (the external host)")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG…]")
    ex.set_defaults(fn=cmd_exec)
    il = lp.add_parser("image-load", help="--kubelet labs: import an OCI or Docker image archive into every node's "
                                          "containerd (the lab has no registry)")
    il.add_argument("--name", default="")
    il.add_argument("--nodes", default="", help="comma-separated (n1,n2); default every node")
    il.add_argument("file")
    il.set_defaults(fn=cmd_image_load)
    kc = lp.add_parser("kubectl", help="kubectl with the lab's admin kubeconfig, from the fabric (where the API "
                                       "server listens)")
    kc.add_argument("--name", default="")
    kc.add_argument("args", nargs=argparse.REMAINDER)
    kc.set_defaults(fn=cmd_kubectl)
    dn = lp.add_parser("down", help="remove a lab and everything of it")
    dn.add_argument("--name", default="")
    dn.set_defaults(fn=cmd_down)


def state_path(name: str) -> str:
    return os.path.join(STATE_DIR, f"{name}.json")


def lab_names() -> list[str]:
    try:
        return sorted(f[:-5] for f in os.listdir(STATE_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []


def resolve(name: str) -> str:
    """The lab a command means: the one named, else the only one."""
    names = lab_names()
    if name:
        if name not in names:
            raise SystemExit(f"podnet lab: no lab named {name!r} (labs: {', '.join(names) or 'none'})")
        return name
    if len(names) != 1:
        raise SystemExit("podnet lab: " + ("no lab is up" if not names else
                                           f"{len(names)} labs are up ({', '.join(names)}): say which with --name"))
    return names[0]


def load(name: str) -> dict[str, Any]:
    with open(state_path(name)) as f:
        return dict(json.load(f))


def cmd_up(a: argparse.Namespace) -> int:
    from ..lab import Cluster, ends_cleanly_on_signals
    name = a.name or ("lab" if "lab" not in lab_names() else "")
    if not name or name in lab_names():
        print(f"podnet lab: a lab named {a.name or 'lab'!r} is up already: give another --name", file=sys.stderr)
        return 2
    if a.ip_family == "ipv6":
        print("podnet lab: --ip-family ipv6 is not built: an IPv6-only lab needs every node, etcd, the API "
              "server's advertise address and the fabric's routes in IPv6 (the lab's control plane is IPv4); "
              "use --ip-family dual", file=sys.stderr)
        return 2
    if (a.pod_network != "routed" or a.ip_family != "ipv4") and not a.kubelet:
        print("podnet lab: --pod-network and --ip-family need --kubelet", file=sys.stderr)
        return 2
    if a.ipam == "neutron" and (not a.kubelet or a.pod_network != "underlay"):
        print("podnet lab: --ipam neutron needs --kubelet --pod-network underlay", file=sys.stderr)
        return 2
    if a.kubelet:
        from ..lab.kubecluster import KubeletCluster
        lab: Cluster = KubeletCluster(a.nodes, a.backend, encryption=a.encryption, pod_network=a.pod_network,
                                      ip_family=a.ip_family, ipam="neutron" if a.ipam == "neutron" else "cluster")
    else:
        lab = Cluster(a.nodes, a.backend, ipam_mode=a.ipam, datastore=a.datastore, encryption=a.encryption)
    os.makedirs(STATE_DIR, exist_ok=True)
    with ends_cleanly_on_signals():
        try:
            lab.up()
            if not a.kubelet:
                for i in range(a.nodes):
                    for _ in range(a.pods_per_node):
                        lab.add_pod(i)
                lab.wait_converged(60)
        except BaseException:
            lab.down()
            raise
    st = {"name": name, **lab.state()}
    with open(state_path(name), "w") as f:
        json.dump(st, f, indent=2)
    enc = f", {a.encryption}" if a.encryption else ""
    if a.kubelet:
        how = "underlay: pods on the fabric" if a.pod_network == "underlay" else f"{a.backend}{enc}"
        print(f"lab {name!r} is up: {a.nodes} Kubernetes nodes (kubelet + containerd, podnet by its DaemonSet, "
              f"{how}), all Ready")
        print(f"  podnet lab kubectl --name {name} -- get pods -A -o wide")
    else:
        print(f"lab {name!r} is up: {a.nodes} nodes ({a.backend}{enc}, {a.datastore} datastore), {len(lab.pods)} pods")
    if st["kubeconfig"]:
        print(f"  KUBECONFIG={st['kubeconfig']} (admin)")
    print(f"  podnet lab status --name {name}   ·   podnet lab exec --name {name} n1 -- ip route   ·   "
          f"podnet lab down --name {name}")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    name = resolve(a.name)
    st = load(name)
    nodes = []
    for i, ns in enumerate(st["nodes"]):
        if i in st["removed"]:
            continue
        pid = st["pids"].get(f"agent{i}")
        node = {"name": f"n{i + 1}", "netns": ns, "address": f"10.97.0.{i + 1}",
                "agent": "running" if pid and os.path.exists(f"/proc/{pid}") else "stopped"}
        if st.get("kubelet"):      # the agent is the DaemonSet's pod: say whether the node's kubelet runs
            kpid = (st["hosts"][i] or {}).get("kubelet")
            node["agent"] = "DaemonSet"
            node["kubelet"] = "running" if kpid and os.path.exists(f"/proc/{kpid}") else "stopped"
        nodes.append(node)
    out = {"name": name, "datastore": st["datastore"], "backend": st["backend"], "nodes": nodes,
           "pods": [{k: p[k] for k in ("name", "namespace", "node", "ip", "netns")} for p in st["pods"]],
           "kubeconfig": st["kubeconfig"], "etcd": st["etcd"], "fabric": st["fabric"],
           "kubelet": bool(st.get("kubelet")), "podnet_image": st.get("podnet_image", "")}
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"lab {name}: {st['datastore']} datastore, {st['backend']}; fabric netns {st['fabric']}")
    if st["kubeconfig"]:
        print(f"admin kubeconfig: {st['kubeconfig']}")
    if st["etcd"]:
        print(f"etcd: {st['etcd']} (in the fabric netns)")
    if st["backend"] == "bgp":
        print("top-of-rack router 10.97.0.253 (BIRD, AS 64600): `podnet lab exec tor -- ip route`; "
              "external host 10.98.0.2: `podnet lab exec ext -- …`")
    if out["kubelet"]:
        print(f"real nodes (kubelet + containerd); podnet by its DaemonSet, image {out['podnet_image'] or '-'}; "
              f"`podnet lab kubectl -- get pods -A -o wide`")
        print(table([[n["name"], n["netns"], n["address"], n["kubelet"]] for n in nodes],
                    ["NODE", "NETNS", "ADDRESS", "KUBELET"]))
    else:
        print(table([[n["name"], n["netns"], n["address"], n["agent"]] for n in nodes],
                    ["NODE", "NETNS", "ADDRESS", "AGENT"]))
    print(table([[p["name"], p["namespace"] or "-", p["node"], p["ip"], p["netns"]] for p in out["pods"]],
                ["POD", "NAMESPACE", "NODE", "IP", "NETNS"]))
    return 0


def cmd_exec(a: argparse.Namespace) -> int:
    name = resolve(a.name)
    st = load(name)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        print("podnet lab exec: give a command after --", file=sys.stderr)
        return 2
    nodes = {f"n{i + 1}": ns for i, ns in enumerate(st["nodes"]) if i not in st["removed"]}
    pods = {p["name"]: p["netns"].rsplit("/", 1)[1] for p in st["pods"]}
    extra = {x.rsplit("-", 1)[1]: x for x in st.get("extra", [])}     # bgp: "tor", "ext" (the external host)
    ns = nodes.get(a.target) or pods.get(a.target) or extra.get(a.target) or \
        (st["fabric"] if a.target == "fabric" else "")
    if not ns:
        print(f"podnet lab exec: no node or pod {a.target!r} in lab {name} (nodes: {', '.join(nodes)})",
              file=sys.stderr)
        return 2
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])
    return 127


def _kubelet_lab(name: str) -> Any:
    from ..lab.kubecluster import KubeletCluster
    st = load(name)
    if not st.get("kubelet"):
        raise SystemExit(f"podnet lab: lab {name!r} has no kubelets (make one with `podnet lab up --kubelet`)")
    return KubeletCluster.from_state(st)


def cmd_image_load(a: argparse.Namespace) -> int:
    lab = _kubelet_lab(resolve(a.name))
    wanted = [int(n[1:]) - 1 for n in a.nodes.split(",") if n] if a.nodes else None
    lab.load_image(os.path.abspath(a.file), wanted)
    print(f"{a.file}: imported on {', '.join(f'n{i + 1}' for i in (wanted if wanted is not None else lab.live))}")
    return 0


def cmd_kubectl(a: argparse.Namespace) -> int:
    from ..lab.control_plane import k8s_bin_dir
    st = load(resolve(a.name))
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    os.execvp("ip", ["ip", "netns", "exec", st["fabric"], os.path.join(k8s_bin_dir(), "kubectl"),
                     f"--kubeconfig={st['kubeconfig']}", *args])
    return 127


def cmd_down(a: argparse.Namespace) -> int:
    from ..lab import Cluster
    name = resolve(a.name)
    st = load(name)
    (_kubelet_lab(name) if st.get("kubelet") else Cluster.from_state(st)).down()
    os.unlink(state_path(name))
    print(f"lab {name!r} removed")
    return 0
