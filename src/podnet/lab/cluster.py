"""A virtual cluster on one Linux machine, for the demo and the cluster tests.

  fabric netns: a bridge (the underlay wire) and etcd on 10.97.0.254
  backend bgp: a "top-of-rack" router netns (tor.py) peering with every node, and an external
      host behind it on a subnet only BGP tells the nodes about
  node netns nodeN: `up0` on the fabric (10.97.0.N), a podnet agent (routing host-gw or
      vxlan, registered in etcd; it writes the node's conflist once ready), the CNI
      launchers run here, through that conflist, as a runtime would run them
  pods: netns of their own, wired by the one-exec `podnet` plugin (ptp mode) with
      podnet-cluster-ipam (or, host-local mode, host-local in the node's subnet); the node
      masquerades what leaves the cluster

Everything lives in namespaces named with a per-run tag; the machine's own interfaces,
routes and firewall are never touched.  `down()` removes all of it, also after a failure.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import install
from . import procs, relay
from .neighbours import NeighbourLimits

FABRIC_NET = "10.97.0"
ETCD_ADDR = f"{FABRIC_NET}.254"
CLUSTER_CIDR = "10.244.0.0/16"
NETWORK = "podnet-lab"
STATE_DIR = "/run/podnet-lab"


def netns_ip(ns: str, *argv: str) -> None:
    """`ip ARGV` inside namespace `ns` (the lab wires its namespaces with iproute2)."""
    subprocess.run(["ip", "netns", "exec", ns, "ip", *argv], check=True, capture_output=True)


def free_port() -> int:
    """A free TCP port BELOW the kernel's ephemeral range: an ephemeral one may be taken by some
    outgoing connection while a member is down, and the member could not listen on it again."""
    import random
    import socket
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for _ in range(200):
        port = random.randrange(20000, max(20001, min(low, 32768)))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Pod:
    node: int
    name: str          # netns name (and, on the Kubernetes datastore, the Pod object's name)
    cid: str
    ip: str
    namespace: str = ""                                      # the Pod object's namespace ("" = none)
    labels: dict[str, str] = field(default_factory=dict)
    pod_name: str = ""                                       # the Pod object's name, when not `name`
    runtime_config: dict[str, Any] = field(default_factory=dict)   # what its ADD got (hostPorts), DEL too

    @property
    def object_name(self) -> str:
        return self.pod_name or self.name

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.object_name}"

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.name}"


class Cluster:
    def __init__(self, nodes: int = 3, backend: str = "vxlan", tag: str = "", work: str = "",
                 lease_ttl: int = 5, route_interval: float = 5.0, reclaim_after: float = 300.0,
                 ipam_mode: str = "cluster", datastore: str = "etcd", agent_args: tuple[str, ...] = (),
                 controllers: bool = True, network_policy: bool = False, encryption: str = "", relay: bool = False
                 ) -> None:
        """datastore "kubernetes": a real control plane (control_plane.py) over the lab's etcd; the
        agents read Node objects with podnet's ServiceAccount; nodes register as kubelets do and
        the controller manager gives them podCIDRs (controllers=False: it starts only when
        start_controllers() is called); network_policy: the agents enforce NetworkPolicy.
        datastore "none": standalone nodes — no etcd, agents without cross-node routing (the
        single-node demo).  encryption "wireguard": the agents encrypt pod traffic between nodes
        (each node's wireguard-go with its socket under the node's own directory).  relay: the
        agents list and watch through a podnet relay beside the API server (lab/relay.py)."""
        self.relay = relay
        self.tag = tag or uuid.uuid4().hex[:6]
        self.encryption = encryption
        self.node_settings: dict[int, dict[str, Any]] = {}   # node index → settings of its own (mixed clusters…)
        self.bgp_hold_time, self.bgp_gr_time = 9, 20     # backend bgp: short, so the tests see a dead node go
        self.backend = backend
        self.ipam_mode = ipam_mode
        self.datastore, self.controllers = datastore, controllers
        self.network_policy = network_policy
        self.cp: Any = None                   # the ControlPlane (kubernetes datastore)
        self.kube: Any = None                 # its KubeLab (what kubelets and an admin do in the API)
        self.timings: dict[str, float] = {}
        self.agent_args = agent_args          # extra `podnet agent` flags (tests)
        self.block_prefix = 24 if ipam_mode == "host-local" or datastore == "kubernetes" else 26
        self.fab = f"pnlab-{self.tag}-fab"
        self.nodes = [f"pnlab-{self.tag}-n{i + 1}" for i in range(nodes)]
        self.neighbours = NeighbourLimits()
        self.work = work or tempfile.mkdtemp(prefix=f"pnlab-{self.tag}-")
        self.bin_dir = os.path.join(self.work, "bin")
        self.etcd_port = free_port()
        self.etcd_url = f"http://{ETCD_ADDR}:{self.etcd_port}"
        self.lease_ttl, self.route_interval, self.reclaim_after = lease_ttl, route_interval, reclaim_after
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.extra_ns: list[str] = []         # other namespaces of this lab (an underlay's far end…)
        self.pids: dict[str, int] = {}        # process groups of a lab loaded from its state
        self.removed: set[int] = set()
        self.pods: list[Pod] = []

    # ------------------------------------------------------------ build
    def up(self, wait_ready: bool = True) -> None:
        """Build the lab; wait_ready: until every agent wrote its conflist."""
        install.write_launchers(self.bin_dir)
        self._build_fabric()
        if self.backend == "bgp":
            self._start_tor()
        if self.datastore in ("etcd", "kubernetes"):
            self._start_etcd()
        if self.datastore == "kubernetes":
            self._start_kubernetes()
        for i in range(len(self.nodes)):
            self.start_agent(i, wait_ready)

    def _build_fabric(self) -> None:
        """The fabric and node namespaces, each node wired to the fabric's bridge."""
        for ns in [self.fab, *self.nodes]:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            netns_ip(ns, "link", "set", "lo", "up")
        netns_ip(self.fab, "link", "add", "fabbr", "type", "bridge")
        netns_ip(self.fab, "addr", "add", f"{ETCD_ADDR}/24", "dev", "fabbr")
        netns_ip(self.fab, "link", "set", "fabbr", "up")
        for i in range(len(self.nodes)):
            self._wire_node(i)

    @property
    def tor(self) -> str:
        return f"pnlab-{self.tag}-tor"

    @property
    def external(self) -> str:
        return f"pnlab-{self.tag}-ext"

    def _start_tor(self) -> None:
        from . import tor
        self.procs["tor-bird"] = tor.start(self.work, self.fab, self.add_netns("tor"), self.add_netns("ext"),
                                           self.bgp_hold_time, self.bgp_gr_time)

    def tor_routes(self) -> dict[str, str]:
        """dst → next hop of what the ToR learned by BGP (in its kernel)."""
        from . import tor
        return tor.learned_routes(self.tor)

    def _start_kubernetes(self) -> None:
        """kube-apiserver (then the controllers), podnet's RBAC objects, the agents' token, and
        the nodes registered as their kubelets would."""
        from .control_plane import ControlPlane
        from .kube import KubeLab
        t0 = time.monotonic()
        self.cp = ControlPlane(self.work, self.fab, ETCD_ADDR, self.etcd_url, CLUSTER_CIDR)
        self.timings["apiserver_ready"] = self.cp.start_apiserver()
        self.kube = KubeLab(self.cp)
        self.kube.apply_rbac()
        self.kube.agent_kubeconfig(self.kubeconfig_path)
        for i in range(len(self.nodes)):
            self.kube.register_node(f"n{i + 1}", f"{FABRIC_NET}.{i + 1}")
        self.procs["heartbeat"] = self.kube.start_heartbeats([f"n{i + 1}" for i in range(len(self.nodes))])
        if self.controllers:
            self.start_controllers()
        if self.relay:
            relay.start_in(self)
        self.timings["control_plane"] = time.monotonic() - t0

    def start_controllers(self) -> None:
        self.cp.start_controllers()

    @property
    def kubeconfig_path(self) -> str:
        """The agents' kubeconfig (podnet's ServiceAccount token)."""
        return os.path.join(self.work, "kubeconfig")

    def _wire_node(self, i: int) -> None:
        node = self.nodes[i]
        netns_ip(self.fab, "link", "add", f"fab{i + 1}", "type", "veth", "peer", "name", "up0", "netns", node)
        netns_ip(self.fab, "link", "set", f"fab{i + 1}", "master", "fabbr", "up")
        netns_ip(node, "addr", "add", f"{FABRIC_NET}.{i + 1}/24", "dev", "up0")
        netns_ip(node, "link", "set", "up0", "up")
        netns_ip(node, "route", "add", "default", "via", ETCD_ADDR)

    def add_node(self, wait_ready: bool = True) -> int:
        """A node joins: its namespace, its wire to the fabric, its agent (ready: conflist written)."""
        i = len(self.nodes)
        self.nodes.append(f"pnlab-{self.tag}-n{i + 1}")
        subprocess.run(["ip", "netns", "add", self.nodes[i]], check=True)
        netns_ip(self.nodes[i], "link", "set", "lo", "up")
        self._wire_node(i)
        if self.kube is not None:
            self.kube.register_node(f"n{i + 1}", f"{FABRIC_NET}.{i + 1}")
            self.kube.set_heartbeat_nodes([f"n{k + 1}" for k in self.live])
        self.start_agent(i, wait_ready)
        return i

    def remove_node(self, i: int) -> None:
        """A node leaves for good (`podnet node rm`, as an operator would after draining it): its
        agent stops, its registration goes; its pods go with its namespace."""
        self.kill_agent(i)
        if self.kube is not None:
            self.kube.set_heartbeat_nodes([f"n{k + 1}" for k in self.live if k != i])
            self.kube.delete_node(f"n{i + 1}")             # kubectl delete node
        else:
            self.podnet("node", "rm", f"n{i + 1}")
        self.remove_node_namespaces(i)

    def remove_node_namespaces(self, i: int) -> None:
        """The node's machine is gone: its namespace and its pods' (the API or etcd is not told)."""
        for p in [p for p in self.pods if p.node == i]:
            subprocess.run(["ip", "netns", "del", p.name], capture_output=True)
            self.pods.remove(p)
        _kill_inside(self.nodes[i])           # the machine's daemons (BIRD, wireguard-go) go with it
        subprocess.run(["ip", "netns", "del", self.nodes[i]], capture_output=True)
        self.removed.add(i)

    @property
    def live(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if i not in self.removed]

    def podnet(self, *argv: str) -> str:
        """Run the podnet CLI against the lab's etcd (from the fabric, where etcd listens)."""
        cmd, rest = argv[0], argv[1:]
        p = subprocess.run(["ip", "netns", "exec", self.fab, sys.executable, "-m", "podnet.cli", cmd, "--etcd",
                            self.etcd_url, *rest], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"podnet {' '.join(argv)}: {p.stdout}{p.stderr}")
        return p.stdout

    def on_node(self, i: int, *argv: str, check: bool = True) -> str:
        """Run the podnet CLI on node i (in its netns, as an operator logged into that node);
        check=False: its output whatever its exit status (`podnet doctor` exits 1 on a failure)."""
        p = subprocess.run(["ip", "netns", "exec", self.nodes[i], sys.executable, "-m", "podnet.cli", *argv],
                           capture_output=True, text=True)
        if p.returncode and check:
            raise RuntimeError(f"podnet {' '.join(argv)} on n{i + 1}: {p.stdout}{p.stderr}")
        return p.stdout

    def _start_etcd(self) -> None:
        data = os.path.join(self.work, "etcd")
        self.etcd_peer_port = getattr(self, "etcd_peer_port", 0) or free_port()
        peer = f"http://{ETCD_ADDR}:{self.etcd_peer_port}"
        log = open(os.path.join(self.work, "etcd.log"), "a")
        self.procs["etcd"] = subprocess.Popen(
            ["ip", "netns", "exec", self.fab, shutil.which("etcd") or "/usr/bin/etcd", "--name", "lab",
             "--data-dir", data, "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"lab={peer}",
             "--listen-metrics-urls", ""], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        check = f"import urllib.request as u; u.urlopen('{self.etcd_url}/health', timeout=1)"
        while subprocess.run(["ip", "netns", "exec", self.fab, "/usr/bin/python3", "-c", check],
                             capture_output=True).returncode != 0:
            if self.procs["etcd"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not start: see {log.name}")
            time.sleep(0.1)

    def etcd_compact(self) -> int:
        """Compact the lab's etcd to its current revision (what etcd does on its own schedule):
        every older resourceVersion is gone.  Returns that revision."""
        import base64
        import urllib.request

        from ..net import netns

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(f"{self.etcd_url}/v3/{path}", data=json.dumps(body).encode())
            with urllib.request.urlopen(req, timeout=10) as r:
                return dict(json.load(r))
        with netns.opened(f"/run/netns/{self.fab}") as fd, netns.entered(fd):
            rev = int(post("kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
            post("kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def restart_etcd(self, down_for: float = 1.0) -> None:
        """etcd goes away (SIGKILL) and comes back with its data: the agents' watches break and
        must reconnect and resync."""
        p = self.procs.pop("etcd")
        p.kill()
        p.wait()
        time.sleep(down_for)
        self._start_etcd()

    def sock(self, i: int) -> str:
        return os.path.join(self.work, f"agent-n{i + 1}.sock")

    def add_netns(self, suffix: str) -> str:
        """Another namespace belonging to this lab (removed with it): its name."""
        name = f"pnlab-{self.tag}-{suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        netns_ip(name, "link", "set", "lo", "up")
        self.extra_ns.append(name)
        return name

    def agent_settings(self, i: int) -> dict[str, Any]:
        """Node i's agent configuration (what the DaemonSet's ConfigMap holds on a real cluster)."""
        home = os.path.join(self.work, f"n{i + 1}")
        s: dict[str, Any] = {"socket": self.sock(i), "log-file": os.path.join(self.work, f"agent-n{i + 1}.log"),
                             "state-dir": os.path.join(home, "state"), "node": f"n{i + 1}"}
        if self.datastore == "none":
            return s
        s.update({"routing": self.backend, "underlay-addr": f"{FABRIC_NET}.{i + 1}", "lease-ttl": self.lease_ttl,
                  "route-interval": self.route_interval, "reclaim-after": self.reclaim_after,
                  "cluster-cidr": [CLUSTER_CIDR], "ipam-mode": self.ipam_mode, "block-size": 26,
                  "node-subnet-size": 24, "network": NETWORK, "cni-conf-dir": self.conf_dir(i),
                  "ipam-data-dir": os.path.join(home, "ipam")})
        if self.encryption:
            s.update({"encryption": self.encryption, "wireguard-run-dir": os.path.join(home, "wireguard")})
        if self.backend == "bgp":
            from .tor import TOR_ADDR, TOR_AS
            s.update({"bgp-peers": [f"{TOR_ADDR}/{TOR_AS}"], "no-nat-cidr": [CLUSTER_CIDR],
                      "bgp-hold-time": self.bgp_hold_time, "bgp-graceful-restart-time": self.bgp_gr_time})
        s.update(self.node_settings.get(i, {}))
        if self.datastore == "kubernetes":
            s.update({"datastore": "kubernetes", "kubeconfig": self.kubeconfig_path,
                      "network-policy": self.network_policy})
            if self.relay:
                s["relay"] = relay.url(ETCD_ADDR)
        else:
            s["etcd"] = [self.etcd_url]
        return s

    def ipam_dir(self, i: int) -> str:
        return os.path.join(self.work, f"n{i + 1}", "ipam")

    def conf_dir(self, i: int) -> str:
        return os.path.join(self.work, f"n{i + 1}", "net.d")

    def start_agent(self, i: int, wait_ready: bool = True) -> None:
        sock = self.sock(i)
        if os.path.exists(sock):
            os.unlink(sock)
        config = os.path.join(self.work, f"agent-n{i + 1}.json")
        os.makedirs(self.work, exist_ok=True)
        with open(config, "w") as f:
            json.dump(self.agent_settings(i), f, indent=2)
        self.procs[f"agent{i}"] = subprocess.Popen(
            ["ip", "netns", "exec", self.nodes[i], sys.executable, "-m", "podnet.cli", "agent", "--config", config,
             *self.agent_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_ready = wait_ready and self.datastore != "none"      # standalone agents write no conflist
        deadline = time.monotonic() + 30
        while not (os.path.exists(sock) and (os.path.exists(self.conflist_path(i)) or not wait_ready)):
            if self.procs[f"agent{i}"].poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.agent_log(i).splitlines()[-8:])
                raise RuntimeError(f"agent on node {i + 1} did not get ready; its log ends:\n{tail}")
            time.sleep(0.05)

    def agent_log(self, i: int) -> str:
        try:
            with open(os.path.join(self.work, f"agent-n{i + 1}.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill_agent(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Node i's agent stops (SIGKILL: dies; SIGTERM: stops as it would on a rollout)."""
        p = self.procs.pop(f"agent{i}", None)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait()

    # ------------------------------------------------------------ pods
    def conflist_path(self, i: int) -> str:
        return os.path.join(self.conf_dir(i), f"10-{NETWORK}.conflist")

    def conflist(self, i: int) -> dict[str, Any]:
        """The conflist node i's agent wrote (what a runtime on that node would read)."""
        with open(self.conflist_path(i)) as f:
            return dict(json.load(f))

    def cni(self, i: int, command: str, cid: str, netns: str, conflist: dict[str, Any] | None = None,
            ifname: str = "eth0", prev: dict[str, Any] | None = None, args: str = "",
            runtime_config: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Run a conflist (default: the one node i's agent wrote) as a runtime does: ADD in order
        with prevResult, DEL in reverse (with the ADD's result, `prev`, as prevResult); each plugin
        gets the runtime_config keys its capabilities declare (libcni's rule)."""
        conflist = conflist or self.conflist(i)
        plugins = conflist["plugins"] if command == "ADD" else list(reversed(conflist["plugins"]))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
               "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": self.bin_dir}
        if args:
            env["CNI_ARGS"] = args
        result: dict[str, Any] | None = prev if command != "ADD" else None
        for plugin in plugins:
            conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
            caps = {k for k, on in plugin.get("capabilities", {}).items() if on}
            picked = {k: v for k, v in (runtime_config or {}).items() if k in caps}
            if picked:
                conf["runtimeConfig"] = picked
            if result is not None:
                conf["prevResult"] = result
            p = subprocess.run(["ip", "netns", "exec", self.nodes[i], f"{self.bin_dir}/{plugin['type']}"],
                               input=json.dumps(conf).encode(), env=env, capture_output=True)
            if p.returncode:
                raise RuntimeError(f"{command} {cid} on n{i + 1} ({plugin['type']}): {p.stdout.decode().strip()}")
            if command == "ADD":
                result = json.loads(p.stdout)
        return result

    def add_pod(self, i: int, labels: dict[str, str] | None = None, namespace: str = "default", name: str = "",
                ports: tuple[tuple[str, str, int], ...] = (), before_add: Callable[[str], object] | None = None,
                host_ports: tuple[tuple[str, int, int], ...] = ()) -> Pod:
        """A pod on node i: its netns wired through the node's conflist — on the Kubernetes
        datastore also a Pod object (named `name`, else after its netns; bound to the node, with
        these named container ports, its IPs reported by the node as kubelet does), named in
        CNI_ARGS as kubelet's runtime names it.  before_add(netns path): called once the netns
        exists, before CNI ADD (a server or client in the pod from its first moment).  host_ports:
        (protocol, hostPort, containerPort) given as the runtime gives them (portMappings)."""
        # room in the kernel's shared neighbour tables for one more pod (lab/neighbours.py)
        self.neighbours.ensure(len(self.nodes) ** 2 + 4 * (len(self.pods) + 1) + 256)
        k = sum(1 for p in self.pods if p.node == i)
        netns_name = f"pnlab-{self.tag}-n{i + 1}p{k}"
        while any(p.name == netns_name for p in self.pods):
            k += 1
            netns_name = f"pnlab-{self.tag}-n{i + 1}p{k}"
        subprocess.run(["ip", "netns", "add", netns_name], check=True)
        netns_ip(netns_name, "link", "set", "lo", "up")
        kube = self.kube is not None
        obj = name or netns_name
        if before_add is not None:
            before_add(f"/run/netns/{netns_name}")
        if kube:
            self.kube.create_pod(obj, f"n{i + 1}", labels, namespace, ports)
        rc = {"portMappings": [{"protocol": pr, "hostPort": hp, "containerPort": cp} for pr, hp, cp in host_ports]} \
            if host_ports else {}
        try:
            res = self.cni(i, "ADD", netns_name, f"/run/netns/{netns_name}",
                           args=self._pod_args(obj, namespace, netns_name) if kube else "", runtime_config=rc)
        except Exception:
            subprocess.run(["ip", "netns", "del", netns_name], capture_output=True)
            raise
        assert res is not None
        ips = [ip["address"].split("/")[0] for ip in res["ips"]]
        pod = Pod(i, netns_name, netns_name, ips[0], namespace if kube else "", dict(labels or {}),
                  obj if obj != netns_name else "", rc)
        if kube:
            self.kube.report_pod_ips(obj, f"n{i + 1}", ips, namespace)
        self.pods.append(pod)
        return pod

    @staticmethod
    def _pod_args(name: str, namespace: str, sandbox: str) -> str:
        return f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={sandbox}"

    def del_pod(self, pod: Pod) -> None:
        self.cni(pod.node, "DEL", pod.cid, pod.netns,
                 args=self._pod_args(pod.object_name, pod.namespace, pod.cid) if pod.namespace else "",
                 runtime_config=pod.runtime_config)
        subprocess.run(["ip", "netns", "del", pod.name], capture_output=True)
        if self.kube is not None and pod.namespace:
            self.kube.delete_pod(pod.object_name, pod.namespace)
        self.pods.remove(pod)

    def podnet_routes(self, i: int) -> dict[str, str]:
        """dst -> next hop of the routes node i's agent made (protocol PODNET_PROTO)."""
        from ..net import netns
        from ..net.rtnl import PODNET_PROTO, open_rtnl
        with netns.opened(f"/run/netns/{self.nodes[i]}") as fd, open_rtnl(fd) as node:
            return {str(r.dst): str(r.gw or "") for fam in (4, 6) for r in node.routes(fam)
                    if r.proto == PODNET_PROTO}

    def wait_converged(self, timeout: float = 15.0) -> float:
        """Until every node routes to every other node's blocks; the seconds it took."""
        t0 = time.monotonic()
        while True:
            blocks: dict[int, set[str]] = {n: set() for n in self.live}
            for p in self.pods:
                blocks[p.node].add(str(ipaddress.ip_network(f"{p.ip}/{self.block_prefix}", strict=False)))
            routes = {i: self.podnet_routes(i) for i in self.live}   # one dump per node per look
            ok = all(all(b in routes[i] for j, bs in blocks.items() if j != i for b in bs) for i in self.live)
            if ok:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("routes did not converge")
            time.sleep(0.01)

    # ------------------------------------------------------------ a lab that outlives its command
    def state(self) -> dict[str, Any]:
        """What `podnet lab status|exec|down` need, in another process, to find this lab."""
        return {"tag": self.tag, "work": self.work, "backend": self.backend, "ipam_mode": self.ipam_mode,
                "encryption": self.encryption,
                "datastore": self.datastore, "nodes": self.nodes, "fabric": self.fab, "removed": sorted(self.removed),
                "extra": self.extra_ns,
                "etcd": self.etcd_url if self.datastore in ("etcd", "kubernetes") else "",
                "kubeconfig": self.cp.admin_kubeconfig() if self.cp is not None else "",
                "api_server": self.cp.server if self.cp is not None else "",
                "pids": {k: p.pid for k, p in {**self.procs, **(self.cp.procs if self.cp else {})}.items()},
                "pods": [{"name": p.name, "namespace": p.namespace, "node": f"n{p.node + 1}", "ip": p.ip,
                          "netns": p.netns, "cid": p.cid, "labels": p.labels, "pod_name": p.pod_name,
                          "runtime_config": p.runtime_config}
                         for p in self.pods]}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Cluster:
        c = cls(len(st["nodes"]), st["backend"], tag=st["tag"], work=st["work"], ipam_mode=st["ipam_mode"],
                datastore=st["datastore"], encryption=st.get("encryption", ""))
        c.nodes, c.removed = list(st["nodes"]), set(st["removed"])
        c.extra_ns = list(st.get("extra") or [])
        c.etcd_url = st.get("etcd") or c.etcd_url
        c.pids = dict(st.get("pids") or {})
        c.pods = [Pod(int(p["node"][1:]) - 1, p["name"], p["cid"], p["ip"], p["namespace"], dict(p["labels"]),
                      p.get("pod_name", ""), dict(p.get("runtime_config") or {})) for p in st["pods"]]
        return c

    # ------------------------------------------------------------ teardown
    def down(self) -> None:
        for p in list(self.pods):
            try:
                self.del_pod(p)
            except Exception:  # noqa: BLE001 - tearing down: the netns goes anyway
                subprocess.run(["ip", "netns", "del", p.name], capture_output=True)
                self.pods.remove(p)
        if self.kube is not None:
            self.kube.stop()
        if self.cp is not None:
            self.cp.stop()
        for proc in list(self.procs.values()):
            procs.stop_popen(proc)
        for pid in self.pids.values():            # processes of a lab loaded from its state
            procs.kill_group(pid)
        for i, ns in enumerate([*self.nodes, self.fab]):
            if i not in self.removed:
                _kill_inside(ns)     # daemons the agents left running on purpose (BIRD, wireguard-go)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for ns in self.extra_ns:
            _kill_inside(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        remove_kept(self.tag)   # anything else of this lab, e.g. a pod whose node was killed
        shutil.rmtree(self.work, ignore_errors=True)
        self.neighbours.restore()


TEARDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def ends_cleanly_on_signals() -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP end the block like an error would (SystemExit 128+n), so the
    caller's `finally` tears the lab down; further signals are ignored until it has (a second
    Ctrl-C must not leave half a lab behind)."""
    def handler(signum: int, _frame: Any) -> None:
        for s in TEARDOWN_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        print(f"podnet: signal {signum}: tearing the lab down", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)
    old = {s: signal.signal(s, handler) for s in TEARDOWN_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _kill_inside(ns: str) -> None:
    """SIGKILL every process in a namespace (a deleted netns lives on while one holds it), and wait
    until they are gone."""
    procs.kill_and_wait(procs.in_netns(ns))


def remove_kept(tag: str = "") -> list[str]:
    """`podnet demo --down`: delete the namespaces (and their processes) of kept labs."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    names = [n for n in out if n.startswith(f"pnlab-{tag}" if tag else "pnlab-")]
    for n in names:
        _kill_inside(n)
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    from .kubelet import remove_cgroups
    remove_cgroups(f"pnlab-{tag}*" if tag else "pnlab-*")   # a kept --kubelet lab's containers
    import glob
    for d in glob.glob(os.path.join(tempfile.gettempdir(), f"pnlab-{tag}*" if tag else "pnlab-*")):
        shutil.rmtree(d, ignore_errors=True)
    return names
