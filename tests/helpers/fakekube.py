"""A TEST DOUBLE of the Kubernetes API server — just enough of /api/v1/nodes (list, watch,
get, create, merge/strategic-merge patch, delete, with resourceVersions) for podnet's
Kubernetes datastore to be tested on a machine where no real API server can run.  The
production code path and client (lightkube) are unchanged; only the server is fake.

Run: python -m tests.helpers.fakekube --listen 10.97.0.254:PORT
"""
from __future__ import annotations

import argparse
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class Store:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []        # read-only here: list with a spec.nodeName selector
        self.recorded: list[dict[str, Any]] = []    # POSTed core/v1 Events, as received
        self.rv = 1
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.cond = threading.Condition()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, copy.deepcopy(obj)))
        self.cond.notify_all()


def merge(base: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (for node metadata, a strategic merge patch means the same)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def status(code: int, reason: str, msg: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": msg}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, *a: Any) -> None:
        pass

    def _json(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _name(self) -> str | None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "nodes"]:
            return None
        return parts[3] if len(parts) > 3 else ""

    def do_GET(self) -> None:
        name = self._name()
        q = parse_qs(urlparse(self.path).query)
        s = self.store
        if urlparse(self.path).path == "/api/v1/pods":
            node = next((f.split("=", 1)[1] for f in q.get("fieldSelector", [""])[0].split(",")
                         if f.startswith("spec.nodeName=")), None)
            with s.cond:
                items = [copy.deepcopy(p) for p in s.pods if node is None or p["spec"].get("nodeName") == node]
            self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(s.rv)},
                             "items": items})
            return
        if name is None:
            self._json(404, status(404, "NotFound", self.path))
        elif name:
            with s.cond:
                node = s.nodes.get(name)
            self._json(200, node) if node else self._json(404, status(404, "NotFound", f'nodes "{name}" not found'))
        elif q.get("watch", ["false"])[0] in ("true", "1"):
            self._watch(int(q.get("resourceVersion", ["0"])[0] or 0), float(q.get("timeoutSeconds", ["300"])[0]))
        else:
            with s.cond:
                body = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": str(s.rv)},
                        "items": [copy.deepcopy(n) for n in s.nodes.values()]}
            self._json(200, body)

    def _watch(self, since: int, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        s = self.store
        import time
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                with s.cond:
                    new = [e for e in s.events if e[0] > since]
                    if not new:
                        s.cond.wait(0.5)
                        continue
                for rv, kind, obj in new:
                    line = (json.dumps({"type": kind, "object": obj}) + "\n").encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    since = rv
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

    def do_POST(self) -> None:
        obj = self._body()
        s = self.store
        if urlparse(self.path).path.endswith("/events"):
            with s.cond:
                s.recorded.append(obj)
            self._json(201, obj)
            return
        with s.cond:
            name = obj["metadata"]["name"]
            if name in s.nodes:
                self._json(409, status(409, "AlreadyExists", f'nodes "{name}" already exists'))
                return
            obj.setdefault("kind", "Node")
            obj.setdefault("apiVersion", "v1")
            s.nodes[name] = obj
            s._event("ADDED", obj)
            body = copy.deepcopy(obj)
        self._json(201, body)

    def do_PATCH(self) -> None:
        name = self._name()
        patch = self._body()
        s = self.store
        with s.cond:
            if not name or name not in s.nodes:
                self._json(404, status(404, "NotFound", f'nodes "{name}" not found'))
                return
            s.nodes[name] = merge(s.nodes[name], patch)
            s._event("MODIFIED", s.nodes[name])
            body = copy.deepcopy(s.nodes[name])
        self._json(200, body)

    def do_DELETE(self) -> None:
        name = self._name()
        s = self.store
        with s.cond:
            node = s.nodes.pop(name or "", None)
            if node is None:
                self._json(404, status(404, "NotFound", f'nodes "{name}" not found'))
                return
            s._event("DELETED", node)
        self._json(200, node)


def serve(host: str, port: int) -> ThreadingHTTPServer:
    handler = type("H", (Handler,), {"store": Store()})
    srv = ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    return srv


def pod_object(name: str, node: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def node_object(name: str, internal_ip: str, pod_cidrs: list[str]) -> dict[str, Any]:
    """What kubelet registers and the controller manager fills in (podCIDRs)."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {}},
            "spec": {"podCIDR": pod_cidrs[0], "podCIDRs": pod_cidrs},
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
                                     {"type": "Hostname", "address": name}]}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    serve(host, int(port)).serve_forever()
