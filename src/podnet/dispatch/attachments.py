"""More networks per pod, no Multus needed: the `podnet` plugin's `"attachments": {}` section.

On ADD of a pod's primary interface (CNI_ARGS names the pod), the pod's
`k8s.v1.cni.cncf.io/networks` annotation (netselect.py) is resolved into
NetworkAttachmentDefinitions, and each one's CNI config — a config or a conflist — is run as a
runtime runs it: on net1, net2, … (or the interface asked for), with the pod's container ID and
netns, the `ips`, `mac`, `portMappings` and `bandwidth` capabilities filled from the annotation
for the plugins that declare them, prevResult down a conflist.  podnet's own types run in this
process (without admission: NetworkPolicy stays on the primary network, as upstream); any other
type is exec'd from CNI_PATH with the spec's environment.  `default-route` moves the pod's
default route to that attachment.  What ADD did is recorded on the node
(RECORD_DIR/<network>/<container>.json: each attachment's config and result), so DEL, CHECK and
GC need no API server; the result goes back on the Pod as `k8s.v1.cni.cncf.io/network-status`.
One attachment failing undoes the others and the primary interface; the error names it.

The API side (the annotation, the NADs, the status patch, Events) is the agent's (agent/
kubeattach.py, installed with `install`): without an agent, a pod's ADD is answered code 11.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..cni.convert import render_result
from ..cni.errors import TRY_AGAIN_LATER, CNIError
from ..cni.invoke import exec_plugin
from ..cni.request import Request
from ..cni.skel import Plugin, run
from ..cni.types import Result
from . import netselect
from .codes import to_cni_error

log = logging.getLogger(__name__)

RECORD_DIR = "/var/lib/cni/podnet/attachments"
CAPABILITIES = ("ips", "mac", "portMappings", "bandwidth")


class Source(Protocol):
    """What the API server gives and takes (the agent implements it)."""

    def pod_annotations(self, namespace: str, name: str) -> dict[str, str]: ...
    def nad(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def set_status(self, namespace: str, name: str, status: list[dict[str, Any]]) -> None: ...
    def event(self, namespace: str, name: str, reason: str, message: str) -> None: ...


_source: Source | None = None


def install(source: Source | None) -> None:
    global _source
    _source = source


def record_dir() -> str:
    return os.environ.get("PODNET_ATTACHMENTS_DIR") or RECORD_DIR


# ------------------------------------------------------------------ running one attachment
def _plugins(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """A NAD's config as the list of plugin configs a runtime runs (name, cniVersion injected)."""
    base = {"cniVersion": conf.get("cniVersion", "1.0.0"), "name": conf.get("name", "")}
    if isinstance(conf.get("plugins"), list):
        return [{**p, **base} for p in conf["plugins"] if isinstance(p, dict)]
    return [{**conf, **base}]


def _runtime_config(plugin: dict[str, Any], sel: netselect.Selection) -> dict[str, Any]:
    """libcni's rule: a capability's runtimeConfig only to a plugin that declares it."""
    caps = plugin.get("capabilities") or {}
    wanted = {"ips": list(sel.ips), "mac": sel.mac, "portMappings": list(sel.port_mappings),
              "bandwidth": sel.bandwidth}
    return {k: v for k, v in wanted.items() if caps.get(k) and v}


def _env(req: Request, ifname: str, command: str, sel: netselect.Selection | None) -> dict[str, str]:
    args = req.env.get("CNI_ARGS", "")
    if sel is not None and sel.cni_args:
        extra = ";".join(f"{k}={v}" for k, v in sel.cni_args.items())
        args = f"{args};{extra}" if args else extra
    env = {k: v for k, v in req.env.items() if k.startswith("CNI_")}
    env.update(CNI_COMMAND=command, CNI_IFNAME=ifname, CNI_ARGS=args)
    return env


def _call(plugin: dict[str, Any], env: dict[str, str], req: Request) -> dict[str, Any] | None:
    """One plugin of an attachment: podnet's in this process (no admission), others exec'd."""
    ptype = str(plugin.get("type") or "")
    own = "podnet" if ptype == "podnet" else ptype.removeprefix("podnet-") if ptype.startswith("podnet-") else ""
    from ..plugins import REGISTRY
    if own in REGISTRY:
        out = run(REGISTRY[own], env, json.dumps(plugin).encode(), to_cni_error)
        doc = json.loads(out.stdout) if out.stdout.strip() else None
        if out.exit_code:
            raise CNIError(int(doc.get("code", 999)) if doc else 999, str(doc.get("msg", "")) if doc else out.stderr)
        return doc
    result = exec_plugin(ptype, env, plugin, env["CNI_COMMAND"], req.path)
    return render_result(result, str(plugin.get("cniVersion"))) if result is not None else None


def attach(req: Request, sel: netselect.Selection, conf: dict[str, Any]) -> dict[str, Any]:
    """ADD of one attachment: every plugin of its config in order; its final result."""
    env = _env(req, sel.interface, "ADD", sel)
    prev: dict[str, Any] | None = None
    for plugin in _plugins(conf):
        c = dict(plugin)
        rc = _runtime_config(plugin, sel)
        if rc:
            c["runtimeConfig"] = rc
        if prev is not None:
            c["prevResult"] = prev
        prev = _call(c, env, req)
    return prev or {}


def detach(req: Request, rec: dict[str, Any], command: str = "DEL") -> None:
    """DEL (or CHECK) of one recorded attachment: the config it was made with, its result as
    prevResult, in reverse for DEL."""
    sel = netselect.Selection(rec["name"], rec["namespace"], rec["interface"], tuple(rec.get("ips", ())),
                              rec.get("mac", ""))
    env = _env(req, rec["interface"], command, sel)
    plugins = _plugins(rec["config"])
    for plugin in reversed(plugins) if command == "DEL" else plugins:
        c = {**plugin, "prevResult": rec["result"]} if rec.get("result") else dict(plugin)
        rc = _runtime_config(plugin, sel)
        if rc:
            c["runtimeConfig"] = rc
        _call(c, env, req)


# ------------------------------------------------------------------ records
def _record_path(req: Request) -> str:
    return os.path.join(record_dir(), req.network, f"{req.container_id}.json")


def _save(req: Request, records: list[dict[str, Any]]) -> None:
    path = _record_path(req)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(records, f)
    os.replace(path + ".tmp", path)


def _load(req: Request) -> list[dict[str, Any]]:
    try:
        with open(_record_path(req)) as f:
            data = json.load(f)
        return list(data) if isinstance(data, list) else []
    except (OSError, ValueError):
        return []


def _forget(req: Request) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(req))


# ------------------------------------------------------------------ around the primary
def _pod(req: Request) -> tuple[str, str] | None:
    ns, name = req.args.get("K8S_POD_NAMESPACE", ""), req.args.get("K8S_POD_NAME", "")
    return (ns, name) if ns and name else None


def _api(what: str, fn: Callable[[], Any]) -> Any:
    """An API call; the API away is code 11 (the runtime retries), naming what was asked."""
    try:
        return fn()
    except CNIError:
        raise
    except Exception as e:  # noqa: BLE001 - lightkube/httpx errors: the API is away or refuses
        raise CNIError(TRY_AGAIN_LATER, f"{what}: the API server did not answer ({type(e).__name__}: {e})") from None


def _selections(src: Source, pod: tuple[str, str]) -> list[netselect.Selection]:
    annotations = _api(f"pod {pod[0]}/{pod[1]}'s annotations", lambda: src.pod_annotations(*pod))
    try:
        return netselect.parse(annotations.get(netselect.NETWORKS, ""), pod[0])
    except ValueError as e:
        src.event(*pod, "InvalidNetworks", str(e))
        raise CNIError(7, f"pod {pod[0]}/{pod[1]}: {e}") from None


def _resolve(src: Source, pod: tuple[str, str], sel: netselect.Selection) -> dict[str, Any]:
    nad = _api(f"NetworkAttachmentDefinition {sel.key}", lambda: src.nad(sel.namespace, sel.name))
    if nad is None:
        msg = f"NetworkAttachmentDefinition {sel.key} not found (asked for by {netselect.NETWORKS})"
        src.event(*pod, "NetworkNotFound", msg)
        raise CNIError(TRY_AGAIN_LATER, f"attachment {sel.key}: {msg}")
    raw = (nad.get("spec") or {}).get("config") or ""
    try:
        conf = json.loads(raw)
        if not isinstance(conf, dict):
            raise ValueError("not an object")
    except ValueError as e:
        msg = f"NetworkAttachmentDefinition {sel.key}: spec.config is not a CNI config ({e})"
        src.event(*pod, "InvalidNetwork", msg)
        raise CNIError(7, f"attachment {sel.key}: {msg}") from None
    conf.setdefault("name", sel.name)
    return conf


def add_attachments(req: Request, primary: Result, undo_primary: Callable[[], None]) -> Result:
    """The pod's attachments after its primary interface; all of them or none (and no primary)."""
    pod = _pod(req)
    if pod is None:
        return primary
    src = _source
    if src is None:
        undo_primary()
        raise CNIError(TRY_AGAIN_LATER, f"pod {pod[0]}/{pod[1]}: its network attachments need the podnet agent "
                                        "(it reads the pod's annotation); try again when it answers")
    done: list[dict[str, Any]] = []
    try:
        for sel in _selections(src, pod):
            conf = _resolve(src, pod, sel)
            try:
                result = attach(req, sel, conf)
            except CNIError as e:
                raise CNIError(e.code, f"attachment {sel.key} ({sel.interface}): {e.msg}", e.details) from None
            except Exception as e:  # noqa: BLE001 - the attachment's own failure, named
                err, _ = to_cni_error(e)
                raise CNIError(err.code, f"attachment {sel.key} ({sel.interface}): {err.msg}") from None
            done.append({"name": sel.name, "namespace": sel.namespace, "interface": sel.interface, "ips": list(sel.ips),
                         "mac": sel.mac, "default_route": list(sel.default_route), "config": conf, "result": result})
            _save(req, done)          # at each step: a crash mid-way leaves what DEL needs
        if any(r["default_route"] for r in done):
            from ..net.podroutes import move_default_routes
            move_default_routes(req.netns, [(r["interface"], g) for r in done for g in r["default_route"]])
    except BaseException:
        for rec in reversed(done):
            try:
                detach(req, rec)
            except Exception as e:  # noqa: BLE001 - undo is best effort; the ADD's error is what counts
                log.warning("undoing attachment %s/%s: %s", rec["namespace"], rec["name"], e)
        _forget(req)
        undo_primary()
        raise
    _publish_status(src, pod, req, primary, done)
    return primary


def _publish_status(src: Source, pod: tuple[str, str], req: Request, primary: Result,
                    done: list[dict[str, Any]]) -> None:
    has_default = any(r["default_route"] for r in done)
    status = [netselect.status_entry(req.network, req.ifname, render_result(primary, "1.0.0"), req.netns,
                                     default=True)]
    for r in done:
        entry = netselect.status_entry(f"{r['namespace']}/{r['name']}", r["interface"], r["result"], req.netns,
                                       default=False)
        if r["default_route"]:
            entry["default"] = True
        status.append(entry)
    if has_default:                    # the cluster network is no longer the default route
        status[0].pop("default", None)
    try:
        src.set_status(*pod, status)
    except Exception as e:  # noqa: BLE001 - the pod's networks work; the annotation is told later or not
        log.warning("network-status of %s/%s not written: %s", *pod, e)


def delete_attachments(req: Request) -> None:
    """From the node's record: no API server needed.  Each attachment's DEL, in reverse; the first
    error is raised after all have run (DEL must clean everything it can)."""
    first: BaseException | None = None
    for rec in reversed(_load(req)):
        try:
            detach(req, rec)
        except Exception as e:  # noqa: BLE001 - the others must still go
            first = first or e
    if first is not None:
        raise first
    _forget(req)


def check_attachments(req: Request) -> None:
    for rec in _load(req):
        detach(req, rec, "CHECK")


def gc_attachments(req: Request, valid: set[str]) -> None:
    """Records (and their attachments) of containers no longer valid."""
    d = os.path.join(record_dir(), req.network)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(d):
            cid = name.removesuffix(".json")
            if not name.endswith(".json") or cid in valid:
                continue
            gone = replace(req, container_id=cid, netns="")
            try:
                delete_attachments(gone)
            except Exception as e:  # noqa: BLE001 - the next GC tries again
                log.warning("GC of the attachments of %s: %s", cid, e)


def enabled(req: Request) -> bool:
    return isinstance(req.config.get("attachments"), dict)


def wrap(plugin: Plugin) -> Plugin:
    """The `podnet` plugin with attachments around it (only when its config has the section)."""
    inner_add, inner_del, inner_check, inner_gc = plugin.add, plugin.delete, plugin.check, plugin.gc

    def add(req: Request) -> Result:
        result = inner_add(req)
        if not enabled(req):
            return result
        return add_attachments(req, result, lambda: inner_del(req))

    def delete(req: Request) -> None:
        if enabled(req):
            delete_attachments(req)
        inner_del(req)

    def check(req: Request) -> None:
        if inner_check is not None:
            inner_check(req)
        if enabled(req):
            check_attachments(req)

    def gc(req: Request) -> None:
        if inner_gc is not None:
            inner_gc(req)
        if enabled(req):
            from ..plugins.common import valid_attachments
            gc_attachments(req, {cid for cid, _ in valid_attachments(req)})

    return replace(plugin, add=add, delete=delete, check=check, gc=gc)
