"""Run a CNI request for a plugin type: registry + skel + the edge error table.

Both the in-process launcher path and the agent call `handle`, so they answer alike.  A pod's
interface plugins run inside admission (admission.py: NetworkPolicy before ADD returns).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..cni.errors import INVALID_CONFIG, CNIError
from ..cni.skel import Outcome, error_outcome, run, version_outcome
from ..plugins import REGISTRY
from . import admission, attachments
from .admission import POD_INTERFACE_TYPES
from .codes import to_cni_error


def handle(plugin_type: str, env: Mapping[str, str], stdin: bytes) -> Outcome:
    plugin = REGISTRY.get(plugin_type)
    if plugin is None:
        if env.get("CNI_COMMAND") == "VERSION":
            return version_outcome(stdin)
        return error_outcome(CNIError(INVALID_CONFIG, f"podnet has no plugin type {plugin_type!r}"), stdin)
    if plugin_type in POD_INTERFACE_TYPES:
        plugin = admission.wrap(plugin)
    if plugin_type == "podnet":
        plugin = attachments.wrap(plugin)      # the pod's other networks, after its policed primary
    return run(plugin, env, stdin, to_cni_error)


def known_types() -> list[str]:
    return sorted(REGISTRY)

