"""What an agent reads of each kind, as the JSON the relay serves (valid objects of that kind, so
the agent's client decodes them as it decodes the API server's).  Everything else — managedFields,
the containers' specs, conditions, a Node's images and status — is ~20× the size and stays behind.

Kept, and why (the readers in parentheses):
- Pod: name, namespace, uid, labels, resourceVersion; spec.nodeName, hostNetwork, the named
  container ports; status.podIP(s) and phase (policy/watch.pod_info).
- Node: name, labels, resourceVersion, podnet.io/* annotations; spec.podCIDR(s); status.addresses
  (kubepeers.NodeRoutes).
- Namespace: name, labels, resourceVersion (policy namespace selectors).
- NetworkPolicy, ClusterNetworkPolicy: the whole object but managedFields and annotations
  (policy/spec.py reads the spec; there are few of them).
Annotations under `keep_annotations` prefixes pass through on every kind (a measuring tool's stamp)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

NODE_ANNOTATIONS = ("podnet.io/",)


def _meta(obj: Any, keep_annotations: Iterable[str], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    m = obj.metadata
    out: dict[str, Any] = {"name": m.name, "resourceVersion": m.resourceVersion}
    if getattr(m, "namespace", None):
        out["namespace"] = m.namespace
    if m.uid:
        out["uid"] = m.uid
    if m.labels:
        out["labels"] = dict(m.labels)
    prefixes = (*extra, *keep_annotations)
    ann = {k: v for k, v in (m.annotations or {}).items() if k.startswith(prefixes)} if prefixes else {}
    if ann:
        out["annotations"] = ann
    if m.deletionTimestamp is not None:
        out["deletionTimestamp"] = m.deletionTimestamp.isoformat().replace("+00:00", "Z")
    return out


def pod(obj: Any, keep_annotations: Iterable[str] = ()) -> dict[str, Any]:
    spec, status = obj.spec, obj.status
    containers = []
    for c in (spec.containers if spec is not None else None) or []:
        named = [{"name": p.name, "containerPort": p.containerPort, "protocol": p.protocol or "TCP"}
                 for p in c.ports or [] if p.name]
        containers.append({"name": c.name, **({"ports": named} if named else {})})
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(obj, keep_annotations),
                           "spec": {"containers": containers}}
    if spec is not None:
        if spec.nodeName:
            out["spec"]["nodeName"] = spec.nodeName
        if spec.hostNetwork:
            out["spec"]["hostNetwork"] = True
    st: dict[str, Any] = {}
    if status is not None:
        if status.phase:
            st["phase"] = status.phase
        if status.podIP:
            st["podIP"] = status.podIP
        if status.podIPs:
            st["podIPs"] = [{"ip": a.ip} for a in status.podIPs if a.ip]
    if st:
        out["status"] = st
    return out


def node(obj: Any, keep_annotations: Iterable[str] = ()) -> dict[str, Any]:
    spec, status = obj.spec, obj.status
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Node",
                           "metadata": _meta(obj, keep_annotations, NODE_ANNOTATIONS)}
    sp: dict[str, Any] = {}
    if spec is not None:
        if spec.podCIDR:
            sp["podCIDR"] = spec.podCIDR
        if spec.podCIDRs:
            sp["podCIDRs"] = list(spec.podCIDRs)
    out["spec"] = sp
    addresses = [{"type": a.type, "address": a.address} for a in (status.addresses if status is not None else None)
                 or []]
    if addresses:
        out["status"] = {"addresses": addresses}
    return out


def namespace(obj: Any, keep_annotations: Iterable[str] = ()) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(obj, keep_annotations)}


def whole(obj: Any, keep_annotations: Iterable[str] = ()) -> dict[str, Any]:
    """A policy: all of it but managedFields and annotations (not read; kubectl's last-applied
    copy alone doubles a policy)."""
    d = dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)
    meta = dict(d.get("metadata") or {})
    meta.pop("managedFields", None)
    prefixes = tuple(keep_annotations)
    ann = {k: v for k, v in (meta.pop("annotations", None) or {}).items() if prefixes and k.startswith(prefixes)}
    if ann:
        meta["annotations"] = ann
    d["metadata"] = meta
    return d


Trim = Callable[[Any, Iterable[str]], dict[str, Any]]
