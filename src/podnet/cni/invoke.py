"""Exec a foreign CNI plugin (delegated IPAM, a non-podnet type) as libcni does."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from .convert import parse_result
from .errors import DECODE_FAILURE, INTERNAL, TRY_AGAIN_LATER, CNIError
from .types import Result


def find_plugin(plugin_type: str, path: tuple[str, ...]) -> str:
    if "/" in plugin_type or not plugin_type:
        raise CNIError(INTERNAL, f"invalid plugin type {plugin_type!r}")
    for d in path:
        cand = os.path.join(d, plugin_type)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise CNIError(INTERNAL, f"failed to find plugin {plugin_type!r} in path {list(path)}")


def exec_plugin(plugin_type: str, env: Mapping[str, str], config: Mapping[str, Any],
                command: str, path: tuple[str, ...], timeout: float = 120.0) -> Result | None:
    """Run the plugin; its error JSON becomes a CNIError with the same code."""
    binary = find_plugin(plugin_type, path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    stdin = json.dumps(config).encode()
    try:
        proc = subprocess.run([binary], input=stdin, env=child_env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CNIError(TRY_AGAIN_LATER, f"{plugin_type} {command} did not answer within {timeout:.0f}s") from None
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(int(err.get("code", INTERNAL)), str(err.get("msg", "")), str(err.get("details", "")))
        except (ValueError, AttributeError):
            raise CNIError(INTERNAL, f"{plugin_type} failed: {proc.stderr.decode(errors='replace').strip() or out!r}") from None
    if command != "ADD":
        return None
    try:
        return parse_result(json.loads(out), str(config.get("cniVersion") or "0.1.0"))
    except ValueError as e:
        raise CNIError(DECODE_FAILURE, f"{plugin_type}: undecodable result", str(e)) from None
