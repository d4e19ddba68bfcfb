"""The agent's HTTP/1.1 server on a root-only unix socket.

POST /cni/<type>  the launcher's request (wire.py: the CNI variables then stdin, in the body) ->
           X-CNI-Exit and a body of stdout then stderr (X-CNI-Stderr-Length): exactly what the
           plugin would have printed and returned in-process.
GET /healthz (alive), GET /readyz (the node can network pods: agent/readiness.py),
GET /metrics (Prometheus text), and what GET_HANDLERS adds (GET /policy/show, /policy/explain).

Requests run on their own threads; nothing here serialises them (host-local takes its
per-network flock, nft calls take a short lock).  A request from a process in another network
namespace, or from a peer that is not root, is refused: the agent does host-side work in its own
namespace.  A client must send its whole request within REQUEST_DEADLINE seconds (a slow or idle
client cannot hold a handler), and one that goes away mid-request costs a debug line, not a
traceback.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler
from typing import Any

from ..cni.errors import DECODE_FAILURE, NOT_AVAILABLE, TRY_AGAIN_LATER, CNIError
from ..cni.skel import error_outcome
from ..net.peer import peer_creds
from ..wire import ENV_LENGTH_HEADER, EXIT_HEADER, MAX_BODY, STDERR_HEADER, decode_env
from . import metrics, readiness

log = logging.getLogger(__name__)

# GET endpoints other parts of the agent serve (path → handler(query) → (status, JSON document)):
# NetworkPolicy's /policy/show and /policy/explain (agent/policy/node.py)
GET_HANDLERS: dict[str, Callable[[dict[str, str]], tuple[int, dict[str, Any]]]] = {}

REQUEST_DEADLINE = 10.0   # seconds from accept to the whole request read (launchers send at once)
IDLE_TIMEOUT = 5.0        # seconds a read may wait for the next byte


def same_netns_as_me(pid: int) -> bool:
    try:
        a, b = os.stat(f"/proc/{pid}/ns/net"), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def error_answer(err: CNIError, stdin: bytes = b"") -> tuple[int, bytes, str]:
    out = error_outcome(err, stdin, "podnet agent")
    return out.exit_code, out.stdout, out.stderr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: AgentServer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("http: " + fmt, *args)

    def setup(self) -> None:
        super().setup()
        self._deadline = threading.Timer(REQUEST_DEADLINE, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        """The client did not send its request in time: cut it off (the read in progress ends)."""
        log.debug("http: a client did not finish its request in %.0fs: dropped", REQUEST_DEADLINE)
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError) as e:
            log.debug("http: client went away mid-request (%s)", e)
        finally:
            self._deadline.cancel()

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:
        self._deadline.cancel()
        if self.path == "/healthz":
            self._send(200, b'{"status":"ok"}\n')
        elif self.path == "/readyz":
            why, degraded = readiness.reason(), readiness.degraded()
            doc = {"ready": not why, "reason": why, **({"degraded": degraded} if degraded else {})}
            self._send(503 if why else 200, (json.dumps(doc) + "\n").encode())
        elif self.path == "/metrics":
            body, ctype = metrics.render()
            self._send(200, body, ctype)
        elif self.path.split("?", 1)[0] in GET_HANDLERS:
            path, _, qs = self.path.partition("?")
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()}
            try:
                status, doc = GET_HANDLERS[path](query)
            except Exception as e:  # noqa: BLE001 - an introspection error is the answer, not a crash
                log.warning("GET %s: %s", path, e)
                status, doc = 500, {"error": f"{type(e).__name__}: {e}"}
            self._send(status, (json.dumps(doc, indent=1) + "\n").encode())
        else:
            self._send(404, b'{"error":"not found"}\n')

    def do_POST(self) -> None:
        if not self.path.startswith("/cni/"):
            self._send(404, b'{"error":"not found"}\n')
            return
        pid, uid = peer_creds(self.request)
        if uid != 0 or not same_netns_as_me(pid):
            log.warning("refused a request from pid %d (uid %d): not root in this network namespace", pid, uid)
            self._send(403, b'{"error":"podnet agent serves only root launchers in its own network namespace"}\n')
            return
        request = self._read_request()
        self._deadline.cancel()
        if isinstance(request, CNIError):
            code, out, err = error_answer(request)
        else:
            env, stdin = request
            code, out, err = self.server.serve_cni(self.path[len("/cni/"):], env, stdin)
        payload = out + err.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(EXIT_HEADER, str(code))
        self.send_header(STDERR_HEADER, str(len(err.encode())))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def _read_request(self) -> tuple[dict[str, str], bytes] | CNIError:
        """(the CNI variables, stdin); a bad or oversized request is refused before its body is
        read (Content-Length first: memory stays bounded)."""
        try:
            length = int(self.headers.get("Content-Length", ""))
            env_len = int(self.headers.get(ENV_LENGTH_HEADER, "0"))
        except ValueError:
            return CNIError(DECODE_FAILURE, "request without a valid Content-Length")
        if length < 0 or length > MAX_BODY:
            return CNIError(DECODE_FAILURE, f"request body of {length} bytes exceeds the {MAX_BODY}-byte cap")
        if not 0 <= env_len <= length:
            return CNIError(DECODE_FAILURE, f"{ENV_LENGTH_HEADER} {env_len} does not fit the body")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError(f"request body cut short ({len(body)} of {length} bytes)")
        return decode_env(body[:env_len]), body[env_len:]


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # a burst of launchers must queue, not fall back in-process

    def handle_error(self, request: Any, client_address: Any) -> None:
        """An unexpected failure serving one client: one log line with the reason (the traceback
        at debug level), and the agent serves on."""
        import sys
        exc = sys.exc_info()[1]
        log.warning("http: a request failed: %s: %s", type(exc).__name__, exc)
        log.debug("http: traceback", exc_info=True)

    def __init__(self, path: str, request_timeout: float) -> None:
        self.request_timeout = request_timeout
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="cni")
        super().__init__(path, Handler)

    def serve_cni(self, ptype: str, env: dict[str, str], raw: bytes) -> tuple[int, bytes, str]:
        """(exit code, stdout, stderr) exactly as the plugin would give them in-process."""
        from ..dispatch import handle
        if env.get("CNI_COMMAND") == "STATUS" and readiness.reason():
            return error_answer(CNIError(NOT_AVAILABLE, f"podnet agent: node not ready: {readiness.reason()}"), raw)
        start = time.perf_counter()
        fut = self.pool.submit(handle, ptype, env, raw)
        command = env.get("CNI_COMMAND", "?")
        try:
            out = fut.result(timeout=self.request_timeout)
        except FutureTimeout:
            metrics.observe(command, ptype, time.perf_counter() - start, TRY_AGAIN_LATER)
            return error_answer(CNIError(TRY_AGAIN_LATER, f"podnet agent: request took over {self.request_timeout:.0f}s"),
                                raw)
        code = 0
        if out.exit_code:
            code, msg = _error_of(out.stdout)
            # one line per refused request, with its code and the reason (which names the field);
            # a traceback is logged only for an unexpected exception (cni/skel.py)
            log.info("refused %s %s container=%s: code %d: %s", command, ptype, env.get("CNI_CONTAINERID", "")[:64],
                     code, msg)
        took = time.perf_counter() - start
        metrics.observe(command, ptype, took, code)
        # one line per request at debug level: which pod waited how long in the agent (a slow
        # pod's time split between the agent and everything around it: runtime, launcher, exec)
        log.debug("cni: %s %s container=%s %.2f ms code %d", command, ptype, env.get("CNI_CONTAINERID", "")[:12],
                  took * 1e3, code)
        return out.exit_code, out.stdout, out.stderr


def _error_of(stdout: bytes) -> tuple[int, str]:
    """(code, msg) of a CNI error answer."""
    try:
        doc = json.loads(stdout)
        return int(doc.get("code", 999)), str(doc.get("msg", ""))[:500]
    except (ValueError, TypeError, AttributeError):
        return 999, stdout[:200].decode(errors="replace")


def serve(path: str, request_timeout: float = 50.0) -> None:
    """Serve until SIGTERM/SIGINT; existing pods are never touched on the way out."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    from .. import dispatch  # warm: plugins, pyroute2
    _ = dispatch
    old = os.umask(0o177)
    try:
        srv = AgentServer(path, request_timeout)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    mine = os.stat(path).st_ino

    def unlink_if_mine() -> None:
        """Remove the socket path unless a newer agent has already taken it over."""
        try:
            if os.stat(path).st_ino == mine:
                os.unlink(path)
        except FileNotFoundError:
            pass

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        unlink_if_mine()  # new launchers fall back at once instead of reaching a closing agent
        raise _Stop()     # out of serve_forever's wait, which has no timeout (no wakeups at rest)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if os.environ.get("PODNET_TRACEMALLOC"):
        trace_allocations()
    log.info("podnet agent serving on %s", path)
    try:
        srv.serve_forever(poll_interval=None)  # type: ignore[arg-type]  # None: wait without a timeout
    except _Stop:
        pass
    finally:
        srv.server_close()
        srv.pool.shutdown(wait=False, cancel_futures=True)
        unlink_if_mine()
        log.info("stopped; %s", memory_report())


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler in the main thread, which waits in serve_forever."""


def trace_allocations() -> None:
    """PODNET_TRACEMALLOC=1: trace Python allocations; each SIGUSR2 logs what grew since the last
    one (finding a leak in a running agent)."""
    import tracemalloc
    tracemalloc.start(int(os.environ.get("PODNET_TRACEMALLOC") or 1) if os.environ["PODNET_TRACEMALLOC"].isdigit()
                      else 16)
    last = [tracemalloc.take_snapshot()]

    def dump(_signum: int, _frame: Any) -> None:
        snap = tracemalloc.take_snapshot()
        for stat in snap.compare_to(last[0], "traceback")[:8]:
            log.warning("tracemalloc %s\n%s", stat, "\n".join(stat.traceback.format()[-14:]))
        log.warning("tracemalloc: %s", memory_report())
        last[0] = snap
    signal.signal(signal.SIGUSR2, dump)


def memory_report() -> str:
    """Current and peak resident memory, logged at shutdown (benchmarks quote it)."""
    import resource
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return f"rss_mib={rss_pages * os.sysconf('SC_PAGE_SIZE') / 2**20:.1f} peak_rss_mib={peak_kib / 1024:.1f}"
