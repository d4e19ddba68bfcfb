"""The policy watch caches only what policy reads of each Pod (agent/policy/watch.pod_essentials):
what the engine makes of it must be exactly what it makes of the whole object."""
from __future__ import annotations

from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from podnet.agent.policy.cluster import PodInfo
from podnet.agent.policy.watch import pod_essentials

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
def test_the_engine_sees_the_same_pod_in_the_essentials(raw: dict[str, Any]) -> None:
    obj = Pod.from_dict(raw)
    kept = pod_essentials(obj)
    assert PodInfo.from_api(kept) == PodInfo.from_api(obj.to_dict())
    assert kept["metadata"]["resourceVersion"] == raw["metadata"].get("resourceVersion")


def test_the_essentials_are_a_fraction_of_the_object() -> None:
    import json
    obj = Pod.from_dict(FULL)
    assert len(json.dumps(pod_essentials(obj))) * 2 < len(json.dumps(obj.to_dict()))
