"""Run one CNI command against a plugin: gate the request, dispatch, render once.

The same `run` serves the in-process launcher path and the agent, so both
answer byte for byte alike.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..wire import MAX_STDIN
from . import limits
from . import version as V
from .convert import render_result
from .errors import INTERNAL, INVALID_ENV, INVALID_NETNS, CNIError
from .request import COMMANDS, Request, decode_config, from_env
from .types import Result

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Plugin:
    """A plugin is its type name plus one function per CNI command it implements."""
    name: str
    add: Callable[[Request], Result]
    delete: Callable[[Request], None]
    check: Callable[[Request], None] | None = None
    status: Callable[[Request], None] | None = None
    gc: Callable[[Request], None] | None = None


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    exit_code: int
    stderr: str = ""


# exception → (the CNI error, whether it was expected): an expected error — a typed failure the
# plugin reports, caused by the request or the node — costs one log line; an unexpected one is a
# bug in podnet and logs its traceback, so an operator can alert on tracebacks.
Translate = Callable[[BaseException], tuple[CNIError, bool]]


def _default_translate(exc: BaseException) -> tuple[CNIError, bool]:
    return CNIError(INTERNAL, f"{type(exc).__name__}: {exc}"), False


def version_outcome(stdin: bytes) -> Outcome:
    """VERSION echoes the input's cniVersion (the spec), defaulting to the newest."""
    ver = V.LATEST
    try:
        conf = json.loads(stdin or b"{}")
        if isinstance(conf, dict) and conf.get("cniVersion") in V.SUPPORTED:
            ver = conf["cniVersion"]
    except ValueError:
        pass
    body = {"cniVersion": ver, "supportedVersions": list(V.SUPPORTED)}
    return Outcome(json.dumps(body).encode() + b"\n", 0)


def about(plugin_name: str) -> str:
    from .. import __version__
    return (f"CNI podnet-{plugin_name} plugin version {__version__}\n"
            f"CNI protocol versions supported: {', '.join(V.SUPPORTED)}\n")


def error_version(stdin: bytes) -> str:
    """The version an error is printed in: the request's cniVersion when it can be read and is
    supported, else the newest."""
    if len(stdin) > MAX_STDIN:
        return V.LATEST
    try:
        ver = decode_config(stdin).get("cniVersion")
        return ver if ver in V.SUPPORTED else V.LATEST
    except CNIError:
        return V.LATEST


def error_outcome(err: CNIError, stdin: bytes, who: str = "podnet") -> Outcome:
    """The error JSON on stdout (in the request's cniVersion), its message on stderr, exit 1."""
    body = err.to_dict(error_version(stdin))
    return Outcome(json.dumps(body).encode() + b"\n", 1, f"{who}: {err.msg}\n")


def _same_netns(path: str) -> bool:
    try:
        a, b = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _dispatch(plugin: Plugin, req: Request) -> Result | None:
    if req.command in ("ADD", "CHECK") and _same_netns(req.netns) \
            and req.env.get("CNI_NETNS_OVERRIDE", "").lower() not in ("1", "true"):
        raise CNIError(INVALID_NETNS, "netns must not be the plugin's own network namespace")
    if req.command == "ADD":
        return plugin.add(req)
    if req.command == "DEL":
        plugin.delete(req)
    elif req.command == "CHECK":
        if plugin.check:
            plugin.check(req)
    elif req.command == "STATUS":
        if plugin.status:
            plugin.status(req)
    elif req.command == "GC":
        if plugin.gc:
            plugin.gc(req)
    return None


def run(plugin: Plugin, env: Mapping[str, str], stdin: bytes,
        translate: Translate = _default_translate) -> Outcome:
    """Execute one CNI command; never raises."""
    command = env.get("CNI_COMMAND")
    if command is None:
        return Outcome(b"", 0, about(plugin.name))
    if command == "VERSION":
        return version_outcome(stdin)
    try:
        if command not in COMMANDS:
            raise CNIError(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
        limits.check_stdin(stdin)
        req = from_env(env, stdin)
        limits.check_config(command, stdin, req.config)
        result = _dispatch(plugin, req)
        if result is None:
            return Outcome(b"", 0)
        body: Any = render_result(result, req.cni_version)
        out = json.dumps(body).encode() + b"\n"
        if size := limits.result_overflow(body, out):
            _undo_add(plugin, req)
            raise limits.result_too_large(size)
        return Outcome(out, 0)
    except CNIError as e:
        err = e
    except Exception as e:  # the edge: anything else becomes a CNI error with a code
        err, expected = translate(e)
        if not expected:
            log.exception("%s %s failed", plugin.name, command)
    return error_outcome(err, stdin, f"podnet-{plugin.name}")


def _undo_add(plugin: Plugin, req: Request) -> None:
    """An ADD that cannot answer: what it made is removed as the runtime's DEL would remove it."""
    try:
        plugin.delete(dataclasses.replace(req, command="DEL"))
    except Exception:  # the ADD's own error is the answer; the undo's goes to the log
        log.exception("%s: undoing an ADD whose result was too large failed", plugin.name)
