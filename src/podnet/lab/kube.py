"""What the lab does in the Kubernetes API, each with the identity that does it in a real cluster:

  an admin        applies podnet's RBAC objects (those of deploy/podnet.yaml), asks the TokenRequest
                  API for the agents' ServiceAccount token, creates and deletes Pod objects
  each node       (system:node:<name>, Node authorizer + NodeRestriction) registers its Node with its
                  InternalIP, renews its Lease and Ready condition, reports its pods' IPs —
                  what kubelet does (tests/cluster run real kubelets in issue 17's tier)

podCIDRs are never written here: kube-controller-manager assigns them.  The second module allowed
to import lightkube (beside agent/kubepeers.py); only the lab loads it.
"""
from __future__ import annotations

import datetime
import functools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lightkube import Client, KubeConfig  # pinned in pyproject: lightkube==1.0.1
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.core_v1 import Container, ContainerPort, NodeAddress, NodeCondition, NodeStatus, PodSpec, PodStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Namespace, Node, Pod, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole
from lightkube.types import PatchType

from ..manifests import NAME, NAMESPACE, DeployConfig, render
from ..net.netns import move_this_thread
from .control_plane import ControlPlane, kubeconfig

T = TypeVar("T")
LAB_NAMESPACE = "default"


def in_fabric(method: Callable[..., T]) -> Callable[..., T]:
    """Run a KubeLab method on its fabric thread."""
    @functools.wraps(method)
    def wrapper(self: KubeLab, *args: Any, **kw: Any) -> T:
        if threading.current_thread().name.startswith("lab-api"):
            return method(self, *args, **kw)
        return self._in_fabric(method, self, *args, **kw)
    return wrapper
HEARTBEAT = 10.0              # seconds, as kubelet's node-status-update-frequency


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def beat(c: Client, node: str) -> None:
    """What kubelet renews: the node's Lease and its Ready condition (with its addresses)."""
    now = _now()
    lease = Lease(metadata=ObjectMeta(name=node, namespace="kube-node-lease"),
                  spec=LeaseSpec(holderIdentity=node, leaseDurationSeconds=40, renewTime=now))
    try:
        c.apply(lease, force=True)
    except ApiError:
        pass
    current = c.get(Node, node)
    addresses = current.status.addresses if current.status and current.status.addresses else []
    status = {"status": {"addresses": [a.to_dict() for a in addresses], "conditions": [
        NodeCondition(type="Ready", status="True", reason="KubeletReady", message="podnet lab node",
                      lastHeartbeatTime=now, lastTransitionTime=now).to_dict()]}}
    c.patch(Node.Status, node, status, patch_type=PatchType.STRATEGIC)


def node_kubeconfig(k8s_dir: str, node: str) -> str:
    return os.path.join(k8s_dir, f"node-{node}.kubeconfig")


class KubeLab:
    """Every API call runs on one worker thread that lives in the lab's fabric namespace: the API
    server listens there, and a socket opened from the machine's own namespace would head for
    the machine's real network instead."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lab-api", initializer=move_this_thread,
                                        initargs=(f"/run/netns/{cp.netns}",))
        self.admin = Client(KubeConfig.from_file(cp.admin_kubeconfig()), field_manager="podnet-lab")
        self._nodes: dict[str, Client] = {}

    def _in_fabric(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return self._pool.submit(fn, *args, **kw).result(60)

    # ------------------------------------------------------------ podnet's objects
    @in_fabric
    def apply_rbac(self) -> None:
        """Namespace, ServiceAccount, ClusterRole and binding exactly as deploy/podnet.yaml has them."""
        for doc in render(DeployConfig()):
            if doc["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
                self.admin.apply(from_dict(doc), force=True)

    @in_fabric
    def apply_crds(self) -> None:
        """The CRDs podnet's manifest ships (NetworkAttachmentDefinition, ClusterNetworkPolicy), until
        the API serves them."""
        import time as _time
        for doc in render(DeployConfig()):
            if doc["kind"] == "CustomResourceDefinition":
                self.admin.apply(from_dict(doc), force=True)
        from ..agent.kubewatch import not_served
        from ..agent.policy.watch import ClusterNetworkPolicy
        deadline = _time.monotonic() + 30
        while True:
            try:
                list(self.admin.list(ClusterNetworkPolicy))
                return
            except Exception as e:  # not served yet: the CRD is still being established
                if not (isinstance(e, ApiError) or not_served(e)):
                    raise
                if _time.monotonic() > deadline:
                    raise
                _time.sleep(0.2)

    @in_fabric
    def apply_cluster_policy(self, policy: dict[str, Any]) -> str:
        """Create or replace a ClusterNetworkPolicy (its JSON); its resourceVersion."""
        from ..agent.policy.watch import ClusterNetworkPolicy
        obj = ClusterNetworkPolicy.from_dict({"apiVersion": "policy.networking.k8s.io/v1beta1",
                                              "kind": "ClusterNetworkPolicy", **policy})
        got = self.admin.apply(obj, force=True)
        return str(got.metadata.resourceVersion) if got.metadata is not None else ""

    @in_fabric
    def delete_cluster_policy(self, name: str) -> None:
        from ..agent.policy.watch import ClusterNetworkPolicy
        try:
            self.admin.delete(ClusterNetworkPolicy, name)
        except ApiError as e:
            if e.status.code != 404:
                raise

    @in_fabric
    def agent_kubeconfig(self, path: str, hours: int = 24 * 7) -> str:
        """A kubeconfig with a token of podnet's ServiceAccount (TokenRequest API): the agents hold
        exactly the rights the manifest grants."""
        req = ServiceAccount.Token(metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=hours * 3600))
        got = self.admin.create(req, name=NAME, namespace=NAMESPACE)
        token = got.status.token if got.status is not None else ""
        if not token:
            raise RuntimeError(f"the TokenRequest API gave no token for {NAMESPACE}/{NAME}")
        return kubeconfig(path, self.cp.server, self.cp.pki.ca.cert, token=token, user=f"{NAMESPACE}:{NAME}")

    # ------------------------------------------------------------ nodes, as kubelet
    def node_client(self, node: str) -> Client:
        if node not in self._nodes:
            pair = self.cp.pki.issue(f"node-{node}", f"system:node:{node}", ("system:nodes",))
            path = kubeconfig(node_kubeconfig(self.cp.dir, node), self.cp.server,
                              self.cp.pki.ca.cert, pair.cert, pair.key)
            self._nodes[node] = Client(KubeConfig.from_file(path), field_manager="kubelet")
        return self._nodes[node]

    @in_fabric
    def register_node(self, node: str, internal_ip: str) -> None:
        c = self.node_client(node)
        obj = Node(metadata=ObjectMeta(name=node, labels={"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"}),
                   status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address=internal_ip),
                                                NodeAddress(type="Hostname", address=node)]))
        try:
            c.create(obj)
        except ApiError as e:
            if e.status.code != 409:
                raise
        self.heartbeat(node)

    @in_fabric
    def heartbeat(self, node: str) -> None:
        beat(self.node_client(node), node)

    def start_heartbeats(self, nodes: list[str]) -> subprocess.Popen[bytes]:
        """kubelet's status loop for every node, as a process of the lab (it outlives `podnet lab
        up`): it renews each listed node's Lease and Ready condition every HEARTBEAT seconds."""
        self.set_heartbeat_nodes(nodes)
        log = open(os.path.join(self.cp.dir, "heartbeat.log"), "ab")
        return subprocess.Popen(["ip", "netns", "exec", self.cp.netns, sys.executable, "-m", "podnet.lab.heartbeat",
                                 self.cp.dir], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def set_heartbeat_nodes(self, nodes: list[str]) -> None:
        for n in nodes:
            self.node_client(n)                  # its kubeconfig exists for the heartbeat process
        tmp = os.path.join(self.cp.dir, "heartbeat-nodes.tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(nodes) + "\n")
        os.replace(tmp, os.path.join(self.cp.dir, "heartbeat-nodes"))

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @in_fabric
    def delete_node(self, node: str) -> None:
        """`kubectl delete node` (an admin)."""
        self.admin.delete(Node, node)

    @in_fabric
    def pod_cidrs(self, node: str) -> tuple[list[str], str]:
        """(spec.podCIDRs, the manager that wrote them — from managedFields)."""
        obj = self.admin.get(Node, node)
        cidrs = list(obj.spec.podCIDRs or []) if obj.spec else []
        writer = ""
        for mf in (obj.metadata.managedFields if obj.metadata else None) or []:
            fields: Any = mf.fieldsV1 or {}
            if "f:podCIDRs" in (fields.get("f:spec") or {}):
                writer = mf.manager or ""
        return cidrs, writer

    @in_fabric
    def annotations(self, node: str) -> dict[str, str]:
        obj = self.admin.get(Node, node)
        return dict(obj.metadata.annotations or {}) if obj.metadata else {}

    @in_fabric
    def annotate(self, node: str, key: str, value: str) -> None:
        self.admin.patch(Node, node, {"metadata": {"annotations": {key: value}}}, patch_type=PatchType.MERGE)

    @in_fabric
    def event_nodes(self, reason: str) -> set[str]:
        """The Nodes that have an Event with this reason (in the default namespace)."""
        return {e.involvedObject.name or "" for e in self.admin.list(Event, namespace="default")
                if e.reason == reason}

    @in_fabric
    def role_rules(self) -> list[dict[str, Any]]:
        role = self.admin.get(ClusterRole, NAME)
        return [r.to_dict() for r in role.rules or []]

    @in_fabric
    def set_role_rules(self, rules: list[dict[str, Any]]) -> None:
        """Replace the rules of podnet's ClusterRole (an admin editing RBAC)."""
        self.admin.patch(ClusterRole, NAME, {"rules": rules}, patch_type=PatchType.MERGE)

    # ------------------------------------------------------------ pods
    @in_fabric
    def create_pod(self, name: str, node: str, labels: dict[str, str] | None = None,
                   namespace: str = LAB_NAMESPACE, ports: tuple[tuple[str, str, int], ...] = ()) -> None:
        """A Pod bound to `node` (no kubelet runs it: the lab wires its netns through the node's
        conflist and reports its IPs as kubelet would); ports: its container's named ports
        (name, protocol, number), what NetworkPolicy's named ports resolve against."""
        container = Container(name="app", image="podnet-lab/none",
                              ports=[ContainerPort(name=n, protocol=proto, containerPort=num) for n, proto, num in ports])
        pod = Pod(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels or {}),
                  spec=PodSpec(nodeName=node, containers=[container], terminationGracePeriodSeconds=0,
                               tolerations=[{"operator": "Exists"}]))  # type: ignore[list-item]
        self.admin.create(pod)

    @in_fabric
    def label_pod(self, name: str, namespace: str, labels: dict[str, str]) -> str:
        """Replace the pod's labels (keys not in `labels` are removed); its new resourceVersion."""
        current = self.admin.get(Pod, name, namespace=namespace).metadata
        old = dict(current.labels or {}) if current is not None else {}
        patch = {k: None for k in old if k not in labels} | dict(labels)
        got = self.admin.patch(Pod, name, {"metadata": {"labels": patch}}, namespace=namespace,
                               patch_type=PatchType.MERGE)
        return str(got.metadata.resourceVersion) if got.metadata is not None else ""

    @in_fabric
    def pod_version(self, name: str, namespace: str) -> str:
        meta = self.admin.get(Pod, name, namespace=namespace).metadata
        return str(meta.resourceVersion) if meta is not None else ""

    # ------------------------------------------------------------ namespaces and NetworkPolicies, as an admin
    @in_fabric
    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        try:
            self.admin.create(Namespace(metadata=ObjectMeta(name=name, labels=labels or {})))
        except ApiError as e:
            if e.status.code != 409:
                raise

    @in_fabric
    def label_namespace(self, name: str, labels: dict[str, str]) -> str:
        """Replace the namespace's labels (the API server keeps kubernetes.io/metadata.name); its
        new resourceVersion."""
        current = self.admin.get(Namespace, name).metadata
        old = dict(current.labels or {}) if current is not None else {}
        patch = {k: None for k in old if k not in labels and k != "kubernetes.io/metadata.name"} | dict(labels)
        got = self.admin.patch(Namespace, name, {"metadata": {"labels": patch}}, patch_type=PatchType.MERGE)
        return str(got.metadata.resourceVersion) if got.metadata is not None else ""

    @in_fabric
    def apply_policy(self, policy: dict[str, Any]) -> str:
        """Create or replace a NetworkPolicy (its JSON as a user writes it); its resourceVersion."""
        obj = from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **policy})
        got = self.admin.apply(obj, force=True)
        return str(got.metadata.resourceVersion) if got.metadata is not None else ""

    @in_fabric
    def delete_policy(self, namespace: str, name: str) -> None:
        try:
            self.admin.delete(NetworkPolicy, name, namespace=namespace)
        except ApiError as e:
            if e.status.code != 404:
                raise

    @in_fabric
    def policies(self) -> list[tuple[str, str]]:
        return [(str(p.metadata.namespace), str(p.metadata.name)) for p in self.admin.list(NetworkPolicy, namespace="*")
                if p.metadata is not None]

    @in_fabric
    def events(self, reason: str, namespace: str = "*") -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.admin.list(Event, namespace=namespace) if e.reason == reason]

    @in_fabric
    def report_pod_ips(self, name: str, node: str, ips: list[str], namespace: str = LAB_NAMESPACE) -> None:
        """Pod status as the node's kubelet writes it (NodeRestriction: only pods bound to it)."""
        now = _now()
        status = PodStatus(phase="Running", podIP=ips[0], podIPs=[{"ip": ip} for ip in ips],  # type: ignore[misc]
                           hostIP="", startTime=now,
                           conditions=[{"type": "Ready", "status": "True"}])  # type: ignore[list-item]
        self.node_client(node).patch(Pod.Status, name, {"status": status.to_dict()}, namespace=namespace,
                                     patch_type=PatchType.MERGE)

    @in_fabric
    def delete_pod(self, name: str, namespace: str = LAB_NAMESPACE) -> None:
        try:
            self.admin.delete(Pod, name, namespace=namespace, grace_period=0)
        except ApiError as e:
            if e.status.code != 404:
                raise

    @in_fabric
    def service_account_exists(self) -> bool:
        try:
            self.admin.get(ServiceAccount, NAME, namespace=NAMESPACE)
            return True
        except ApiError:
            return False
