"""`podnet lab up --kubelet`: the lab with real Kubernetes nodes.

The fabric, etcd and the control plane are the lab's (cluster.py, control_plane.py); each node
runs containerd, kubelet and kube-proxy (nftables) as a real node does (kubelet.py), with the
lab's images imported (images.py: no registry).  Nothing of podnet is put on a node by the lab:
`kubectl apply` of podnet's own manifest (rendered with the lab's values) installs it — the
DaemonSet's init container copies the launchers into the node's /opt/cni/bin, the agent writes
the conflist once ready, and only then does kubelet report the node Ready.

cni "reference": instead of podnet, Debian's reference plugins (bridge + host-local in each
node's podCIDR, portmap, loopback) are put on every node — the baseline of the pod-startup
numbers, on the same lab.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..manifests import DeployConfig, render, to_yaml
from . import dns, images
from .cluster import CLUSTER_CIDR, ETCD_ADDR, FABRIC_NET, Cluster
from .control_plane import CLUSTER_CIDR6, SERVICE_CIDR, SERVICE_CIDR6, ControlPlane, k8s_bin_dir
from .kubelet import NodeHost

CALL_LOG = "/var/log/podnet/cni-calls.log"      # on each node: every CNI call its runtime made
REFERENCE_DIR = "/usr/lib/cni"                   # Debian's containernetworking-plugins
LAB_ROUTE_PROTO = "150"                          # the fabric's routes to the Nodes' podCIDRs (route_pod_cidrs)
FABRIC_SUBNET = f"{FABRIC_NET}.0/24"             # the lab's datacenter network
FABRIC_NET6 = "fd97::"                           # … and its IPv6 side on a dual-stack lab (fd97::N/64)
UNDERLAY_POOL = f"{FABRIC_NET}.128/26"           # pod-network underlay: the pods' addresses (only theirs: not .254)
UNDERLAY_BLOCK = 28                              # … in blocks of 16 per node
NEUTRON_PORT = 9696                              # ipam neutron: the lab's Neutron, on the fabric's .254
NEUTRON_NETWORK = "fabric"                       # … its network: the fabric's subnet, the VMs' ports
NEUTRON_POOL = 2                                 # … ready ports each agent keeps
SOURCE = Path(__file__).resolve().parents[3]     # the checkout the podnet image is built from


class KubeletLabError(RuntimeError):
    """The lab's nodes did not come up as asked (the message says which and where to look)."""


class KubeletCluster(Cluster):
    def __init__(self, nodes: int = 2, backend: str = "vxlan", tag: str = "", work: str = "", cni: str = "podnet",
                 encryption: str = "", network_policy: bool = True, pod_network: str = "routed",
                 dns: bool = True, ip_family: str = "ipv4", ipam: str = "cluster") -> None:
        super().__init__(nodes, backend, tag=tag, work=work, datastore="kubernetes", encryption=encryption,
                         network_policy=network_policy)
        self.cni_kind = cni
        self.pod_network = pod_network          # underlay: pods on the fabric (UNDERLAY_POOL), etcd for addresses
        self.with_dns = dns                     # CoreDNS (lab/dns.py), as kind has it
        if ip_family not in ("ipv4", "dual"):
            raise KubeletLabError(f"ip-family {ip_family}: the lab runs ipv4 or dual (an IPv6-only fabric would "
                                  "need every node, the API server and etcd addressed in IPv6: not built yet)")
        if ip_family == "dual" and pod_network != "routed":
            raise KubeletLabError("ip-family dual: with pod-network routed only")
        self.ip_family = ip_family              # dual: the fabric, pods and Services in both families
        if ipam not in ("cluster", "neutron"):
            raise KubeletLabError(f"ipam {ipam}: the kubelet lab runs cluster (etcd) or neutron")
        if ipam == "neutron" and pod_network != "underlay":
            raise KubeletLabError("ipam neutron: with pod-network underlay only (each node a VM on the fabric)")
        self.ipam = ipam                        # neutron: a real Neutron on the fabric, each node a VM port
        self.neutron: Any = None
        self.hosts = [self._host(i) for i in range(nodes)]
        self.podnet_image = ""                  # the name of the podnet image the DaemonSet runs
        self.image_tars: dict[str, str] = {}    # image name → OCI tar (imported on every node)

    def _host(self, i: int) -> NodeHost:
        # kube-proxy's clusterCIDR is where pods' addresses are: traffic from it is not masqueraded
        pods = UNDERLAY_POOL if self.pod_network == "underlay" else CLUSTER_CIDR
        dual = self.ip_family == "dual"
        return NodeHost(f"n{i + 1}", self.nodes[i], f"{FABRIC_NET}.{i + 1}", self.work, self.tag,
                        f"{pods},{CLUSTER_CIDR6}" if dual else pods, self.service_cidr, images.PAUSE,
                        cluster_dns=self.dns_ips() if self.with_dns else [],
                        addr6=f"{FABRIC_NET6}{i + 1}" if dual else "", env={"PODNET_CALL_LOG": CALL_LOG})

    @property
    def service_cidr(self) -> str:
        return f"{SERVICE_CIDR},{SERVICE_CIDR6}" if self.ip_family == "dual" else SERVICE_CIDR

    @property
    def cluster_cidr(self) -> str:
        return f"{CLUSTER_CIDR},{CLUSTER_CIDR6}" if self.ip_family == "dual" else CLUSTER_CIDR

    def dns_ips(self) -> list[str]:
        """kube-dns's addresses: the tenth of each service CIDR (kubeadm's and kind's choice)."""
        import ipaddress
        return [str(ipaddress.ip_network(c)[10]) for c in self.service_cidr.split(",")]

    # ------------------------------------------------------------ build
    def up(self, wait_ready: bool = True, install: bool = True) -> None:
        """Fabric, etcd, control plane; every node's daemons; podnet by its manifest (cni
        "podnet"; install False: not yet — the caller applies it with install_podnet());
        wait_ready: until every node is Ready."""
        t0 = time.monotonic()
        for name, tar in (images.pause_image(), images.probe_image(), *([dns.image()] if self.with_dns else [])):
            self.image_tars[name] = str(tar)
        if self.cni_kind == "podnet":
            name, tar = images.podnet_image(SOURCE)
            self.podnet_image, self.image_tars[name] = name, str(tar)
        self.timings["images"] = time.monotonic() - t0
        self._build_fabric()
        if self.ip_family == "dual":
            self._fabric_ipv6()
        self._start_etcd()
        if self.ipam == "neutron":
            self._start_neutron()
        self.cp = ControlPlane(self.work, self.fab, ETCD_ADDR, self.etcd_url, self.cluster_cidr,
                               service_cidr=self.service_cidr)
        self.timings["apiserver_ready"] = self.cp.start_apiserver()
        self.cp.start_controllers()
        t1 = time.monotonic()
        self.cp.pki.issue("kube-proxy", "system:kube-proxy")     # shared by the nodes: made once, here
        with ThreadPoolExecutor(len(self.nodes)) as pool:           # image imports dominate: nodes in parallel
            list(pool.map(self.start_node, range(len(self.nodes))))
        self.wait_nodes(ready=False)
        self.timings["nodes_registered"] = time.monotonic() - t1
        if self.cni_kind == "podnet":
            if install:
                self.install_podnet(wait_ready)
        else:
            for i in range(len(self.nodes)):
                self.install_reference(i)
            if wait_ready:
                self.wait_nodes(ready=True, timeout=300)
                self.route_pod_cidrs()
                self.install_dns()

    def _start_neutron(self) -> None:
        """Neutron on the fabric (the cloud's API): the `fabric` network and subnet, and every node
        a VM with its own port holding the node's address — as nova would have made them."""
        from .neutron import NeutronServer
        t0 = time.monotonic()
        work = Path(self.work) / "neutron"
        self.neutron = NeutronServer(work=work, host=ETCD_ADDR, port=NEUTRON_PORT, netns=self.fab).start()
        assert self.neutron.proc is not None
        self.procs["neutron"] = self.neutron.proc
        net = self.neutron.create("network", name=NEUTRON_NETWORK)
        sub = self.neutron.create("subnet", network_id=net["id"], ip_version=4, cidr=FABRIC_SUBNET,
                                  gateway_ip=ETCD_ADDR, allocation_pools=[{"start": f"{FABRIC_NET}.10",
                                                                           "end": f"{FABRIC_NET}.99"}])
        for i, h in enumerate(self.hosts):
            self.neutron.create("port", network_id=net["id"], name=h.name, device_owner="compute:nova",
                                device_id=f"vm-{h.name}", fixed_ips=[{"subnet_id": sub["id"],
                                                                      "ip_address": f"{FABRIC_NET}.{i + 1}"}])
        self.timings["neutron"] = time.monotonic() - t0

    def neutron_url(self) -> str:
        return f"http://{ETCD_ADDR}:{NEUTRON_PORT}"

    def _fabric_ipv6(self) -> None:
        """A dual-stack fabric: the router (FABRIC_NET6 + fe) and every node on fd97::/64 too."""
        subprocess.run(["ip", "-n", self.fab, "addr", "add", f"{FABRIC_NET6}fe/64", "dev", "fabbr", "nodad"],
                       check=True)
        for i, ns in enumerate(self.nodes):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{FABRIC_NET6}{i + 1}/64", "dev", "up0", "nodad"], check=True)
            subprocess.run(["ip", "-n", ns, "-6", "route", "add", "default", "via", f"{FABRIC_NET6}fe"], check=True)

    def start_node(self, i: int) -> None:
        """Node i's holder, containerd (images imported), kubelet (registers the Node with its
        client certificate) and kube-proxy."""
        h, pki = self.hosts[i], self.cp.pki
        h.start_holder()
        h.start_containerd()
        for tar in self.image_tars.values():
            h.import_image(tar)
        node = pki.issue(f"node-{h.name}", f"system:node:{h.name}", ("system:nodes",))
        h.start_kubelet(self.cp.server, pki.ca.cert, node.cert, node.key)
        proxy = pki.issue("kube-proxy", "system:kube-proxy")
        h.start_kube_proxy(self.cp.server, pki.ca.cert, proxy.cert, proxy.key)

    def manifest(self, image: str = "") -> str:
        """podnet's manifest with the lab's values (what `podnet manifests` prints for them)."""
        if self.pod_network == "underlay":       # pods on the fabric: addresses from the lab's etcd
            cfg = DeployConfig(cluster_cidr=UNDERLAY_POOL, image=image or self.podnet_image, datastore="etcd",
                               etcd_endpoints=self.etcd_url, network_policy=self.network_policy,
                               pod_network="underlay", underlay_subnet=FABRIC_SUBNET, underlay_gateway=ETCD_ADDR,
                               service_cidr=SERVICE_CIDR, block_size=UNDERLAY_BLOCK)
            if self.ipam == "neutron":
                cfg.ipam_mode, cfg.neutron_url, cfg.neutron_network = "neutron", self.neutron_url(), NEUTRON_NETWORK
                cfg.neutron_address_pairs, cfg.neutron_pool_size = "cidr", NEUTRON_POOL
        else:
            cfg = DeployConfig(cluster_cidr=CLUSTER_CIDR, backend=self.backend, image=image or self.podnet_image,
                               encryption=self.encryption, network_policy=self.network_policy,
                               cluster_cidr_v6=CLUSTER_CIDR6 if self.ip_family == "dual" else "")
        docs = render(cfg)
        path = os.path.join(self.work, "podnet.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(docs))
        return path

    def apply_podnet(self, image: str = "") -> None:
        self.kubectl("apply", "-f", self.manifest(image))

    def install_podnet(self, wait_ready: bool = True) -> None:
        """`kubectl apply` of podnet's manifest; wait_ready: until every node is Ready (timed), then
        the cluster DNS (it needs the pod network)."""
        t0 = time.monotonic()
        self.apply_podnet()
        if wait_ready:
            self.wait_nodes(ready=True, timeout=300)
            self.timings["apply_to_ready"] = time.monotonic() - t0
            self.route_pod_cidrs()
            self.install_dns()

    def install_dns(self, timeout: float = 180) -> None:
        """CoreDNS's objects, until its Deployment is available (lab/dns.py)."""
        if not self.with_dns:
            return
        import json as _json
        t0 = time.monotonic()
        docs = dns.objects(self.dns_ips())
        self.kubectl("apply", "-f", "-", stdin=_json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        self.kubectl("rollout", "status", "-n", dns.NAMESPACE, "deployment/coredns", f"--timeout={int(timeout)}s",
                     timeout=timeout + 10)
        self.timings["dns_ready"] = time.monotonic() - t0

    def route_pod_cidrs(self) -> dict[str, str]:
        """The control plane reaches pods as a control-plane node does: the fabric — where the API
        server runs — routes each Node's spec.podCIDRs to that Node's InternalIP, as a cloud's
        route controller programs the VPC router (kube-controller-manager --configure-cloud-routes).
        The node forwards to its pods like any routed traffic, so NetworkPolicy sees the API
        server's address (not a pod's, not the pod's own node): the rules a remote node's
        traffic meets.  Routes of Nodes that are gone are removed.  Returns CIDR → next hop."""
        want: dict[str, str] = {}
        for n in self.get("nodes").get("items", []) if self.pod_network != "underlay" else []:   # underlay: on-link
            addrs = [a["address"] for a in n.get("status", {}).get("addresses", []) if a["type"] == "InternalIP"]
            for cidr in n.get("spec", {}).get("podCIDRs", []):
                addr = next((a for a in addrs if (":" in a) == (":" in cidr)), "")      # the CIDR's family's
                if addr:
                    want[cidr] = addr
        have = {}
        for family in ("-4", "-6"):
            out = subprocess.run(["ip", "-n", self.fab, "-j", family, "route", "show", "proto", LAB_ROUTE_PROTO],
                                 capture_output=True, text=True).stdout
            have.update({r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")})
        for cidr in set(have) - set(want):
            subprocess.run(["ip", "-n", self.fab, "route", "del", cidr, "proto", LAB_ROUTE_PROTO], capture_output=True)
        for cidr, via in want.items():
            if have.get(cidr) != via:
                subprocess.run(["ip", "-n", self.fab, "route", "replace", cidr, "via", via, "proto", LAB_ROUTE_PROTO],
                               check=True, capture_output=True)
        return want

    def load_image(self, tar: str, nodes: list[int] | None = None) -> None:
        """`podnet lab image-load`: an OCI or Docker archive into every (or the given) node's containerd."""
        for i in self.live if nodes is None else nodes:
            self.hosts[i].import_image(tar)

    def install_reference(self, i: int, timeout: float = 60) -> None:
        """Debian's reference plugins and a bridge + host-local conflist in node i's podCIDR."""
        h = self.hosts[i]
        deadline = time.monotonic() + timeout
        while not (cidr := self.node(h.name).get("spec", {}).get("podCIDR", "")):
            if time.monotonic() > deadline:
                raise KubeletLabError(f"{h.name}: no podCIDR after {timeout:.0f}s")
            time.sleep(0.2)
        bin_dir = h.path("/opt/cni/bin")
        for plugin in ("bridge", "host-local", "portmap", "loopback"):
            shutil.copy(os.path.join(REFERENCE_DIR, plugin), bin_dir / plugin)
        conf = {"cniVersion": "1.0.0", "name": "reference", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        (h.path("/etc/cni/net.d") / "10-reference.conflist").write_text(json.dumps(conf, indent=2))

    # ------------------------------------------------------------ the API, as an admin
    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120) -> str:
        """kubectl with the admin kubeconfig, from the fabric (where the API server listens)."""
        p = subprocess.run(["ip", "netns", "exec", self.fab, os.path.join(k8s_bin_dir(), "kubectl"),
                            f"--kubeconfig={self.cp.admin_kubeconfig()}", *args],
                           capture_output=True, text=True, input=stdin, timeout=timeout)
        if check and p.returncode:
            raise KubeletLabError(f"kubectl {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json")))

    def node(self, name: str) -> dict[str, Any]:
        return self.get("node", name)

    def ready(self, node: dict[str, Any]) -> tuple[bool, str]:
        for c in node.get("status", {}).get("conditions", []):
            if c["type"] == "Ready":
                return c["status"] == "True", c.get("message", "")
        return False, "no Ready condition yet"

    def wait_nodes(self, ready: bool, timeout: float = 120) -> None:
        """Until every live node is registered (ready False) or Ready (ready True)."""
        want = {self.hosts[i].name for i in self.live}
        deadline = time.monotonic() + timeout
        while True:
            items = {n["metadata"]["name"]: n for n in self.get("nodes").get("items", [])}
            missing = want - set(items) if not ready else {n for n in want if n not in items or not self.ready(items[n])[0]}
            if not missing:
                return
            for i in self.live:
                h = self.hosts[i]
                for daemon in ("containerd", "kubelet"):
                    if not h.alive(daemon):
                        raise KubeletLabError(f"{h.name}: {daemon} exited: see {h.dir / (daemon + '.log')}")
            if time.monotonic() > deadline:
                why = {n: self.ready(items[n])[1] if n in items else "not registered" for n in sorted(missing)}
                raise KubeletLabError(f"nodes not {'Ready' if ready else 'registered'} after {timeout:.0f}s: {why}")
            time.sleep(0.5)

    def pod_netns(self, namespace: str, name: str) -> str:
        """The netns of a running pod (its sandbox process's), as a path the lab's probes open."""
        pod = self.get("pod", "-n", namespace, name)
        uid, node = pod["metadata"]["uid"], pod["spec"]["nodeName"]
        h = next(h for h in self.hosts if h.name == node)
        for procs in h.pod_cgroup_procs(uid):
            for pid in procs:
                return f"/proc/{pid}/ns/net"
        raise KubeletLabError(f"pod {namespace}/{name}: no process in its cgroups on {node}")

    def calls(self, i: int) -> list[dict[str, str]]:
        """The CNI calls node i's runtime made (the launchers' PODNET_CALL_LOG), in order."""
        path = self.hosts[i].path("/var/log/podnet") / os.path.basename(CALL_LOG)
        out = []
        for line in path.read_text().splitlines() if path.exists() else []:
            stamp, *fields = line.split()
            out.append({"time": stamp, **dict(f.split("=", 1) for f in fields)})
        return out

    # ------------------------------------------------------------ nodes leaving
    def stop_node(self, i: int) -> None:
        """The node's machine goes down: kubelet, kube-proxy, containerd and its containers stop."""
        self.hosts[i].stop()

    def remove_node(self, i: int) -> None:
        """After a drain: the node's daemons stop, `kubectl delete node`, its namespace goes."""
        self.stop_node(i)
        self.kubectl("delete", "node", self.hosts[i].name, "--wait=true")
        self.remove_node_namespaces(i)
        self.route_pod_cidrs()

    # ------------------------------------------------------------ state, teardown
    def state(self) -> dict[str, Any]:
        return {**super().state(), "kubelet": True, "cni": self.cni_kind, "pod_network": self.pod_network,
                "ipam": self.ipam,
                "ip_family": self.ip_family,
                "podnet_image": self.podnet_image,
                "images": self.image_tars, "hosts": [h.pids for h in self.hosts]}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> KubeletCluster:
        c = cls(len(st["nodes"]), st["backend"], tag=st["tag"], work=st["work"], cni=st.get("cni", "podnet"),
                encryption=st.get("encryption", ""), pod_network=st.get("pod_network", "routed"),
                ip_family=st.get("ip_family", "ipv4"), ipam=st.get("ipam", "cluster"))
        c.nodes, c.removed = list(st["nodes"]), set(st["removed"])
        c.pids = dict(st.get("pids") or {})
        c.podnet_image, c.image_tars = st.get("podnet_image", ""), dict(st.get("images") or {})
        c.cp = ControlPlane(c.work, c.fab, ETCD_ADDR, st["etcd"], c.cluster_cidr, service_cidr=c.service_cidr)
        for h, pids in zip(c.hosts, st.get("hosts") or [], strict=False):
            h.pids = dict(pids)
        return c

    def down(self) -> None:
        for i, h in enumerate(self.hosts):
            if i not in self.removed:
                h.stop()
        super().down()
