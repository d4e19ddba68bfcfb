"""A lab node as a real Kubernetes node: containerd, kubelet and kube-proxy (nftables mode) in
the node's network namespace and a mount namespace of its own.

Why a mount namespace: kubelet, containerd and podnet's DaemonSet use fixed paths (/var/lib/kubelet,
/run/containerd, /opt/cni/bin, /etc/cni/net.d, /run/netns …).  A "holder" process enters the node's
netns, unshares the mount namespace and binds a directory of the node's own over each of them;
there it also mounts a fresh /sys (so /sys/class/net is the node's) with the machine's
/sys/fs/cgroup bound back (runc needs it) — the holder technique of the lab notes.  Every daemon
of the node is started with `nsenter -t HOLDER -m -n`.  The machine's own directories only gain
empty mount points.

What this machine needs of the node's settings, and why (also beside each in the generated files):
  - no systemd: cgroupfs driver for kubelet and runc;
  - cgroups are v1 (hybrid): kubelet's failCgroupV1 off;
  - several kubelets on one machine: each its own cgroupRoot (/pnlab-<tag>-nN);
  - no CAP_SYS_RESOURCE: containerd's restrict_oom_score_adj, kubelet's oomScoreAdj 0;
  - kubelet sets machine-wide kernel tunables (kernel.panic …) it wants: each is shadowed by a
    file in the node's mount namespace, so the machine's values stay as they are;
  - swap may be on: failSwapOn off.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .control_plane import k8s_bin_dir, kubeconfig

# Fixed paths of a Kubernetes node (what the DaemonSet's hostPaths name) → a directory per node.
# Every writable hostPath of podnet's manifests must be here (tests/unit/test_deploy.py checks),
# or the lab's nodes would share it: wireguard-go's UAPI sockets in /run/wireguard did.
NODE_PATHS = ("/var/lib/kubelet", "/var/lib/containerd", "/run/containerd", "/var/log/pods", "/var/log/containers",
              "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/cni", "/var/lib/podnet", "/run/podnet", "/opt/podnet",
              "/run/netns", "/etc/kubernetes", "/var/log/podnet", "/run/wireguard")
# Kernel tunables kubelet's container manager sets machine-wide: kept per node instead.
SHADOWED_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class NodeHostError(RuntimeError):
    """A node's daemons did not come up (the message names the log)."""


def _cgroup_controllers() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers and the unified one)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] in ("cgroup", "cgroup2") and parts[1].startswith(str(CGROUP_ROOT) + "/"):
            out.append(Path(parts[1]))
    return out


def remove_cgroups(pattern: str) -> list[str]:
    """Kill what is left in the top-level cgroups matching `pattern` (a node's containers), then
    remove them deepest first; returns the ones removed."""
    tops = [top for ctrl in _cgroup_controllers() for top in ctrl.glob(pattern) if top.is_dir()]
    members = {int(pid) for top in tops for listed in top.rglob("cgroup.procs")
               for pid in listed.read_text().split() if pid.isdigit()}
    procs.kill_and_wait(members)
    for top in tops:
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)       # a killed process still leaving
    return sorted({top.name for top in tops})


def containerd_toml(root: str, state: str, sock: str, cni_bin: str, cni_conf: str, sandbox_image: str,
                    stream_addr: str, snapshotter: str = "overlayfs", runc_root: str = "") -> str:
    """containerd 1.6's config (version 2) for a CRI runtime on this machine (also the runtimes
    tier's, with its own paths)."""
    runc_root_line = f'\n        Root = "{runc_root}"' if runc_root else ""
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # this machine withholds CAP_SYS_RESOURCE: no oom_score_adj below containerd's own
  restrict_oom_score_adj = true
  stream_server_address = "{stream_addr}"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # no systemd here: runc manages cgroups through cgroupfs, as kubelet does
        SystemdCgroup = false{runc_root_line}
"""


@dataclass
class NodeHost:
    """One node: `name` (n1), its netns, its fabric address, under `work`/host-<name>."""
    name: str
    netns: str
    addr: str
    work: str
    tag: str
    cluster_cidr: str
    service_cidr: str
    sandbox_image: str
    cluster_dns: list[str] = field(default_factory=list)    # kubelet's clusterDNS (the lab's CoreDNS); [] none
    addr6: str = ""                                         # a dual-stack node's IPv6 address on the fabric
    env: dict[str, str] = field(default_factory=dict)      # containerd's extra environment (its plugins inherit it)
    pids: dict[str, int] = field(default_factory=dict)     # "holder", "containerd", "kubelet", "kube-proxy"
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)   # reaped at stop (this process only)

    @property
    def dir(self) -> Path:
        return Path(self.work) / f"host-{self.name}"

    @property
    def node_ips(self) -> str:
        """kubelet's --node-ip: the fabric address, and on a dual-stack lab the IPv6 one too."""
        return f"{self.addr},{self.addr6}" if self.addr6 else self.addr

    @property
    def cgroup(self) -> str:
        return f"/pnlab-{self.tag}-{self.name}"

    def path(self, node_path: str) -> Path:
        """Where a node's fixed path (e.g. /opt/cni/bin) lives, seen from the machine."""
        return self.dir / "fs" / node_path.strip("/").replace("/", "_")

    # ------------------------------------------------------------ holder
    def start_holder(self) -> int:
        for p in NODE_PATHS:
            self.path(p).mkdir(parents=True, exist_ok=True)
            os.makedirs(p, exist_ok=True)                  # an empty mount point on the machine
        sysctl_dir = self.dir / "sysctl"
        sysctl_dir.mkdir(parents=True, exist_ok=True)
        binds = [f"mount --bind {self.path(p)} {p}" for p in NODE_PATHS]
        for s in SHADOWED_SYSCTLS:
            f = sysctl_dir / s.replace("/", ".")
            f.write_text(Path("/proc/sys", s).read_text())
            binds.append(f"mount --bind {f} /proc/sys/{s}")
        keep = self.dir / "cgroup-keep"
        keep.mkdir(exist_ok=True)
        ready = self.dir / "holder-ready"
        ready.unlink(missing_ok=True)
        (self.dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")     # the node resolves nothing outside
        script = "set -e; " + "; ".join([
            *binds, f"mount --rbind {CGROUP_ROOT} {keep}", "mount -t sysfs sysfs /sys",
            f"mount --rbind {keep} {CGROUP_ROOT}", "mount --make-rshared /", f"touch {ready}"]) + "; exec sleep infinity"
        holder = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount",
                                   "--propagation", "slave", "sh", "-c", script],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=open(self.dir / "holder.log", "ab"), start_new_session=True)
        self._children.append(holder)
        self.pids["holder"] = holder.pid
        deadline = time.monotonic() + 10
        while not ready.exists():
            if holder.poll() is not None or time.monotonic() > deadline:
                raise NodeHostError(f"{self.name}: the holder process failed: {(self.dir / 'holder.log').read_text()}")
            time.sleep(0.02)
        return holder.pid

    def enter(self, *argv: str) -> list[str]:
        """argv run in the node's network and mount namespaces."""
        return ["nsenter", "-t", str(self.pids["holder"]), "-m", "-n", "--wd=/", *argv]

    def alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        return bool(pid) and os.path.exists(f"/proc/{pid}") and \
            not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.enter(*argv), capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise NodeHostError(f"{self.name}: {' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
        return p

    def _daemon(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(self.enter(*argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **env} if env else None)
        self._children.append(proc)
        self.pids[name] = proc.pid

    # ------------------------------------------------------------ cgroups
    def make_cgroup_root(self) -> None:
        """kubelet wants its cgroupRoot to exist in every hierarchy; cpuset's needs cpus and mems."""
        for ctrl in _cgroup_controllers():
            d = ctrl / self.cgroup.lstrip("/")
            d.mkdir(exist_ok=True)
            if ctrl.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((ctrl / f).read_text())

    def pod_cgroup_procs(self, uid: str) -> list[list[int]]:
        """The pids in each cgroup of a pod (kubelet's cgroupfs layout: …/kubepods[/qos]/pod<uid>/<container>)."""
        out: list[list[int]] = []
        for ctrl in _cgroup_controllers():
            if ctrl.name != "pids":
                continue
            top = ctrl / self.cgroup.lstrip("/")
            for pod in top.rglob(f"pod{uid}"):
                for listed in sorted(pod.rglob("cgroup.procs")):
                    pids = [int(p) for p in listed.read_text().split()]
                    if pids:
                        out.append(pids)
        return out

    def remove_cgroups(self) -> None:
        remove_cgroups(self.cgroup.lstrip("/"))

    # ------------------------------------------------------------ containerd
    def containerd_config(self) -> Path:
        cfg = self.dir / "containerd.toml"
        cfg.write_text(containerd_toml("/var/lib/containerd", "/run/containerd", "/run/containerd/containerd.sock",
                                       "/opt/cni/bin", "/etc/cni/net.d", self.sandbox_image, self.addr))
        return cfg

    def start_containerd(self, timeout: float = 30) -> None:
        self._daemon("containerd", ["containerd", "--config", str(self.containerd_config())], self.env)
        sock = self.path("/run/containerd") / "containerd.sock"
        deadline = time.monotonic() + timeout
        while not sock.exists() or self.run("ctr", "--address", "/run/containerd/containerd.sock", "version",
                                            check=False).returncode:
            if not self.alive("containerd") or time.monotonic() > deadline:
                raise NodeHostError(f"{self.name}: containerd did not come up: see {self.dir / 'containerd.log'}")
            time.sleep(0.1)

    def import_image(self, tar: str) -> None:
        """`ctr -n k8s.io images import` (the CRI's namespace): the image is there for kubelet."""
        self.run("ctr", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "images", "import",
                 "--no-unpack=false", tar, timeout=600)

    # ------------------------------------------------------------ kubelet
    def kubelet_config(self, ca: str) -> Path:
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",             # no systemd on this machine
            "cgroupRoot": self.cgroup,              # several kubelets on one machine: one root each
            "failCgroupV1": False,                  # this machine's cgroups are v1 (hybrid)
            "failSwapOn": False,                    # the machine may have swap on
            "oomScoreAdj": 0,                       # no CAP_SYS_RESOURCE: kubelet cannot lower its own
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            "address": self.addr, "healthzBindAddress": "127.0.0.1", "readOnlyPort": 0,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": ca}},
            "authorization": {"mode": "Webhook"},
            "resolvConf": str(self.dir / "resolv.conf"),     # the node's own (pods with dnsPolicy Default)
            **({"clusterDNS": self.cluster_dns, "clusterDomain": "cluster.local"} if self.cluster_dns else {}),
            "localStorageCapacityIsolation": False,          # the disk is the machine's, shared by every node
            "evictionHard": {"memory.available": "1%", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,              # images were imported, never pulled: keep them
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "4s", "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
        }
        path = self.path("/etc/kubernetes") / "kubelet.json"
        path.write_text(json.dumps(cfg, indent=2))
        return Path("/etc/kubernetes/kubelet.json")

    def start_kubelet(self, server: str, ca: str, cert: str, key: str) -> None:
        self.make_cgroup_root()
        kubeconfig(str(self.path("/etc/kubernetes") / "kubelet.kubeconfig"), server, ca, cert, key,
                   user=f"system:node:{self.name}")
        config = self.kubelet_config(ca)
        self._daemon("kubelet", [os.path.join(k8s_bin_dir(), "kubelet"), f"--config={config}",
                                 "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig",
                                 f"--hostname-override={self.name}", f"--node-ip={self.node_ips}",
                                 "--cert-dir=/var/lib/kubelet/pki", "--v=2"])

    # ------------------------------------------------------------ kube-proxy
    def start_kube_proxy(self, server: str, ca: str, cert: str, key: str) -> None:
        kubeconfig(str(self.path("/etc/kubernetes") / "kube-proxy.kubeconfig"), server, ca, cert, key,
                   user="system:kube-proxy")
        cfg = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables", "clusterCIDR": self.cluster_cidr, "hostnameOverride": self.name,
            "clientConnection": {"kubeconfig": "/etc/kubernetes/kube-proxy.kubeconfig"},
            "bindAddress": self.addr, "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            # conntrack limits are machine-wide: leave the machine's as they are
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        (self.path("/etc/kubernetes") / "kube-proxy.json").write_text(json.dumps(cfg, indent=2))
        self._daemon("kube-proxy", [os.path.join(k8s_bin_dir(), "kube-proxy"),
                                    "--config=/etc/kubernetes/kube-proxy.json", "--v=2"])

    # ------------------------------------------------------------ teardown
    def stop_daemon(self, name: str) -> None:
        pid = self.pids.pop(name, 0)
        if pid:
            procs.kill_group(pid)

    def stop(self) -> None:
        """Stop every daemon and container of the node and remove its cgroups and directories
        (works from another process too: only pids are needed)."""
        for name in ("kubelet", "kube-proxy", "containerd"):
            self.stop_daemon(name)
        self.kill_shims()
        self.remove_cgroups()
        self.stop_daemon("holder")
        for child in self._children:
            child.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_shims(self) -> None:
        """containerd's shims (their own sessions) and anything else still in the node's mount
        namespace go."""
        holder = self.pids.get("holder", 0)
        if holder:
            procs.kill_and_wait(procs.in_mount_ns(holder))
