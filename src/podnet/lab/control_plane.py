"""A real Kubernetes control plane for the lab: kube-apiserver, kube-controller-manager and
kube-scheduler, built from source at one pinned release (scripts/k8s-build.sh, cached outside the
checkout), started as processes in the lab's fabric namespace over the lab's etcd.

  kube-apiserver           RBAC and Node authorizers, NodeRestriction and ServiceAccount
                           admission, service-account tokens signed by the lab's key
  kube-controller-manager  --allocate-node-cidrs: the node-ipam controller gives every Node its
                           spec.podCIDRs (podnet only reads them), nodelifecycle, serviceaccount …
  kube-scheduler           so Deployments' pods land on nodes
Every component authenticates with a client certificate of the lab's CA (pki.py).
"""
from __future__ import annotations

import glob
import os
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

from .pki import Pki

KUBERNETES_VERSION = "v1.37.2"           # = scripts/k8s-build/go.mod (a unit test keeps them equal)
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_CIDR6 = "fd96::/112"           # the dual-stack lab's second service range
CLUSTER_CIDR6 = "fd44::/56"            # … and pod range (a /64 per node)
API_PORT = 6443
BIN_ENV = "PODNET_K8S_BIN"


class ControlPlaneError(RuntimeError):
    """The control plane cannot run here (binaries missing) or did not come up (the log says why)."""


def k8s_bin_dir() -> str:
    """Where the built binaries are: $PODNET_K8S_BIN, else the build cache for the pinned release."""
    if os.environ.get(BIN_ENV):
        return os.environ[BIN_ENV]
    cache = os.environ.get("PODNET_K8S_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "podnet", "k8s")
    d = os.path.join(cache, KUBERNETES_VERSION, "bin")
    if not os.path.isfile(os.path.join(d, "kube-apiserver")):
        found = sorted(glob.glob(os.path.join(cache, "*", "bin", "kube-apiserver")))
        raise ControlPlaneError(f"no Kubernetes {KUBERNETES_VERSION} binaries in {d} (found: {found or 'none'}): "
                                "run scripts/k8s-build.sh, or set PODNET_K8S_BIN")
    return d


def kubeconfig(path: str, server: str, ca: str, cert: str = "", key: str = "", token: str = "",
               user: str = "lab") -> str:
    """A kubeconfig file (JSON is YAML) for `server`, with a client certificate or a token."""
    import json
    creds = {"client-certificate": cert, "client-key": key} if cert else {"token": token}
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
           "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": ca}}],
           "users": [{"name": user, "user": creds}],
           "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    return path


def https_get(netns_name: str, url: str, ca: str, client: str = "", timeout: float = 2.0) -> tuple[int, bytes]:
    """GET `url` from inside the lab's namespace `netns_name` (the lab's addresses exist only
    there), verified with the lab CA `ca`; client: a certificate pair's path without .crt/.key.
    Raises OSError when nothing answers."""
    from ..net import netns
    ctx = ssl.create_default_context(cafile=ca)
    if client:
        ctx.load_cert_chain(f"{client}.crt", f"{client}.key")
    with netns.opened(f"/run/netns/{netns_name}") as fd, netns.entered(fd):
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return int(r.status), r.read()


@dataclass
class ControlPlane:
    work: str                       # the lab's work dir
    netns: str                      # the fabric namespace the components run in
    addr: str                       # the API server's address on the fabric
    etcd_url: str
    cluster_cidr: str                  # one CIDR, or "v4,v6" (dual-stack)
    node_mask: int = 24
    service_cidr: str = SERVICE_CIDR   # one CIDR, or "v4,v6" (dual-stack)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://{self.addr}:{API_PORT}"

    @property
    def dir(self) -> str:
        return os.path.join(self.work, "k8s")

    def admin_kubeconfig(self) -> str:
        return os.path.join(self.dir, "admin.kubeconfig")

    def start_apiserver(self) -> float:
        """Certificates and kube-apiserver; returns the seconds until its /readyz said ok."""
        bins = k8s_bin_dir()
        os.makedirs(self.dir, exist_ok=True)
        t0 = time.monotonic()
        self.pki = Pki(os.path.join(self.dir, "pki"))
        p = self.pki
        api = p.issue("apiserver", "kube-apiserver", server=True, ips=(self.addr, "127.0.0.1", "10.96.0.1"),
                      dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"))
        sa = p.service_account_key()
        admin = p.issue("admin", "podnet-lab-admin", ("system:masters",))
        kubelet_client = p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))
        kubeconfig(self.admin_kubeconfig(), self.server, p.ca.cert, admin.cert, admin.key)
        for name, cn in (("controller-manager", "system:kube-controller-manager"),
                         ("scheduler", "system:kube-scheduler")):
            pair = p.issue(name, cn)
            kubeconfig(os.path.join(self.dir, f"{name}.kubeconfig"), self.server, p.ca.cert, pair.cert, pair.key)
        self._run("kube-apiserver", bins, [
            f"--etcd-servers={self.etcd_url}", f"--bind-address={self.addr}", f"--advertise-address={self.addr}",
            f"--secure-port={API_PORT}", f"--tls-cert-file={api.cert}", f"--tls-private-key-file={api.key}",
            f"--client-ca-file={p.ca.cert}", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={self.service_cidr}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
            f"--kubelet-client-certificate={kubelet_client.cert}", f"--kubelet-client-key={kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP", "--event-ttl=1h", "--profiling=false",
            # webhooks and aggregated APIs are called at their Service's endpoints (pod addresses,
            # which the fabric routes to their nodes), not at its ClusterIP: the fabric runs no
            # kube-proxy, as a control plane without a node agent (managed clusters) does not
            "--enable-aggregator-routing=true"])
        self.wait_ready()
        return time.monotonic() - t0

    def start_controllers(self) -> None:
        """kube-controller-manager (node IPAM: podCIDRs) and kube-scheduler."""
        bins, p = k8s_bin_dir(), self.pki
        sa = p.service_account_key()
        self._run("kube-controller-manager", bins, [
            f"--kubeconfig={os.path.join(self.dir, 'controller-manager.kubeconfig')}",
            f"--authentication-kubeconfig={os.path.join(self.dir, 'controller-manager.kubeconfig')}",
            f"--authorization-kubeconfig={os.path.join(self.dir, 'controller-manager.kubeconfig')}",
            "--allocate-node-cidrs", f"--cluster-cidr={self.cluster_cidr}", *self._mask_flags(),
            f"--service-cluster-ip-range={self.service_cidr}", "--use-service-account-credentials",
            f"--service-account-private-key-file={sa.key}", f"--root-ca-file={p.ca.cert}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false",
            "--node-monitor-grace-period=40s"])
        self._run("kube-scheduler", bins, [
            f"--kubeconfig={os.path.join(self.dir, 'scheduler.kubeconfig')}",
            f"--authentication-kubeconfig={os.path.join(self.dir, 'scheduler.kubeconfig')}",
            f"--authorization-kubeconfig={os.path.join(self.dir, 'scheduler.kubeconfig')}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false"])

    def _mask_flags(self) -> list[str]:
        """Per-family node CIDR sizes on a dual-stack cluster (a /64 per node for IPv6)."""
        if "," in self.cluster_cidr:
            return [f"--node-cidr-mask-size-ipv4={self.node_mask}", "--node-cidr-mask-size-ipv6=64"]
        return [f"--node-cidr-mask-size={self.node_mask}"]

    def _run(self, name: str, bins: str, args: list[str]) -> None:
        self.args[name] = args
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.netns, os.path.join(bins, name), *args],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the API server's /readyz answers ok (asked from inside the fabric, with the admin
        certificate)."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs.get("kube-apiserver")
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(f"kube-apiserver exited ({proc.returncode}): "
                                        f"see {os.path.join(self.dir, 'kube-apiserver.log')}")
            if self._readyz():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: "
                                        f"see {os.path.join(self.dir, 'kube-apiserver.log')}")
            time.sleep(0.1)

    def _readyz(self) -> bool:
        admin = os.path.join(self.dir, "pki", "admin")
        try:
            return https_get(self.netns, f"{self.server}/readyz", self.pki.ca.cert, admin)[0] == 200
        except OSError:
            return False

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """The API server goes away (SIGKILL) and comes back with the same flags (a fault test;
        down_for: how long the outage lasts)."""
        self.kill_apiserver()
        time.sleep(down_for)
        self.resume_apiserver()

    def kill_apiserver(self) -> None:
        proc = self.procs["kube-apiserver"]
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def resume_apiserver(self) -> None:
        """Start the killed API server again with the same flags; until /readyz."""
        self._run("kube-apiserver", k8s_bin_dir(), self.args["kube-apiserver"])
        self.wait_ready()

    def stop(self) -> None:
        from .procs import stop_popen
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_popen(proc)
