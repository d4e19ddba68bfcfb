"""The API side of pod attachments (dispatch/attachments.py), for an agent with API access: the
pod's annotations (one GET: the annotation is read when its sandbox's network is made), a
NetworkAttachmentDefinition (k8s.cni.cncf.io/v1), the `network-status` annotation written back
(a merge patch of the Pod's annotations: RBAC `patch pods`), and Events on the Pod."""
from __future__ import annotations

import json
import logging
from typing import Any

from lightkube import Client  # pinned in pyproject: lightkube==1.0.1
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from ..dispatch.netselect import STATUS

log = logging.getLogger(__name__)

NetworkAttachmentDefinition = create_namespaced_resource(
    "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions")


class KubeAttachments:
    def __init__(self, client: Client, events: Any) -> None:
        """events: object_event(kind, namespace, name, reason, message) (the datastore's)."""
        self.client, self.events = client, events

    def pod_annotations(self, namespace: str, name: str) -> dict[str, str]:
        pod = self.client.get(Pod, name, namespace=namespace)
        meta = pod.metadata
        return dict((meta.annotations if meta is not None else None) or {})

    def nad(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.client.get(NetworkAttachmentDefinition, name, namespace=namespace)
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise
        return {"spec": dict(getattr(obj, "spec", None) or {})}     # a generic resource: its spec as sent

    def set_status(self, namespace: str, name: str, status: list[dict[str, Any]]) -> None:
        self.client.patch(Pod, name, {"metadata": {"annotations": {STATUS: json.dumps(status)}}}, namespace=namespace,
                          patch_type=PatchType.MERGE)

    def event(self, namespace: str, name: str, reason: str, message: str) -> None:
        self.events.object_event("Pod", namespace, name, reason, message)
