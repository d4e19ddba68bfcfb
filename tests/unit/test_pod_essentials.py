"""The policy watch caches only what policy reads of each Pod (agent/policy/watch.pod_info, a small
PodInfo the engine shares): it must be exactly what the engine makes of the whole object."""
from __future__ import annotations

import gc
import ipaddress
import sys
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from podnet.agent import kubewatch
from podnet.agent.policy import cluster
from podnet.agent.policy.cluster import ClusterView, PodInfo
from podnet.agent.policy.watch import pod_info

FULL: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "4711", "uid": "u-1",
                 "labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b" * 200},
                 "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:status": {"f:podIPs": {}}}}]},
    "spec": {"nodeName": "n7", "containers": [
        {"name": "app", "image": "registry.example/web:1", "args": ["--serve"] * 20,
         "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9000},
                   {"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
        {"name": "sidecar", "image": "registry.example/side:2", "ports": [{"name": "metrics", "containerPort": 9090}]}]},
    "status": {"phase": "Running", "podIP": "10.244.3.7", "podIPs": [{"ip": "10.244.3.7"}, {"ip": "fd00::3:7"}],
               "conditions": [{"type": "Ready", "status": "True"}]},
}


def variants() -> list[dict[str, Any]]:
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}
    host = {**bare, "spec": {"hostNetwork": True, "nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "10.97.0.1"}}
    return [FULL, bare, host]


@pytest.mark.parametrize("raw", variants(), ids=["full", "bare", "host-network"])
def test_the_engine_sees_the_same_pod_in_the_cache(raw: dict[str, Any]) -> None:
    obj = Pod.from_dict(raw)
    kept = pod_info(obj)
    whole = PodInfo.from_api(obj.to_dict())
    assert kept == whole
    assert (kept.version, kept.addrs) == (whole.version, whole.addrs)
    assert kept.version == str(raw["metadata"].get("resourceVersion") or "")
    assert kept.addrs == tuple(str(ip) for ip in kept.ips)


def test_pods_share_their_strings_and_hold_no_dict() -> None:
    """Two pods' equal labels, namespace and node are one object each; an address's text is the
    pod's own in every set (pod_addrs), and a PodInfo has no per-instance dict."""
    a, b = (pod_info(Pod.from_dict({**FULL, "metadata": {**FULL["metadata"], "name": n}})) for n in ("w1", "w2"))
    assert a.labels is b.labels and a.namespace is b.namespace and a.node is b.node
    assert not any(isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                   for v in (getattr(a, f) for f in a.__slots__) if isinstance(v, tuple) for v in v), \
        "addresses are kept as text (an ipaddress object per pod is ~130 bytes more)"
    assert not hasattr(a, "__dict__")
    view = ClusterView("n1")
    view.put_pod(a)
    assert all(x is y for x, y in zip(view.pod_addrs(a), a.addrs, strict=True))
    assert sys.getsizeof(a) < 120


def test_label_sets_are_shared_and_unique_ones_do_not_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Deployment's replicas share one labels tuple; labels only one (gone) pod had — a
    StatefulSet's pod-name — leave the table when it next doubles."""
    monkeypatch.setattr(cluster, "_LABELS", {})
    monkeypatch.setattr(cluster, "_labels_sweep_at", 4096)
    same = [PodInfo.make("ns", f"w{i}", {"app": "web"}, [f"10.1.0.{i}"], "n1", False, [], "1") for i in range(50)]
    assert all(p.labels is same[0].labels for p in same)
    for i in range(20000):           # pods that come and go, each with labels of its own
        PodInfo.make("ns", f"s{i}", {"statefulset.kubernetes.io/pod-name": f"s{i}"}, [], "n1", False, [], "1")
    gc.collect()
    assert len(cluster._LABELS) < 4096 * 2, len(cluster._LABELS)
    assert PodInfo.make("ns", "w99", {"app": "web"}, [], "n1", False, [], "1").labels is same[0].labels


def test_the_pod_cache_and_the_engine_share_one_key_string() -> None:
    """The Pod watch's cache keys by the PodInfo's own key, the view indexes by the same string."""
    obj = Pod.from_dict(FULL)
    key, kept = kubewatch._keyed(obj, pod_info)
    assert key == "shop/web-1" and key is kept.key
    view = ClusterView("n1")
    view.put_pod(kept)
    assert next(iter(view.pods)) is key
    assert kubewatch._keyed(obj, None) == ("shop/web-1", obj)
