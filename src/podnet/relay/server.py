"""The relay's HTTP side: the Kubernetes list and watch endpoints of the kinds it follows, in the
API server's wire format (paged lists with `limit`/`continue`, chunked watches with bookmarks,
410 Gone for a version it no longer has, Status objects for errors), so an agent's client talks to
it exactly as to the API server.  Every request carries a bearer token the API server vouches for
(TokenReview, cached a minute) and whose user the relay was told to serve."""
from __future__ import annotations

import hashlib
import logging
import ssl
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .feed import Feed, Gone, dumps

log = logging.getLogger(__name__)

PAGES_KEPT = 256           # paged lists in progress (a continue token names one)
PAGE_TTL = 120.0           # seconds a paged list's snapshot is kept between pages
BOOKMARK_EVERY = 30.0      # seconds between bookmarks on a quiet watch
WATCH_MAX = 3600           # the longest watch served (seconds); the client resumes
AUTH_TTL = 60.0            # seconds a token's review is trusted
COALESCE = 0.05            # after sending, a watch gathers what comes for this long before it sends again


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class Pages:
    """Snapshots of lists being read page by page: a continue token is its id and an offset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: OrderedDict[str, tuple[float, str, list[bytes]]] = OrderedDict()

    def put(self, rv: str, items: list[bytes]) -> str:
        token = uuid.uuid4().hex
        with self.lock:
            self.kept[token] = (time.monotonic() + PAGE_TTL, rv, items)
            while len(self.kept) > PAGES_KEPT:
                self.kept.popitem(last=False)
        return token

    def get(self, token: str) -> tuple[str, list[bytes]] | None:
        now = time.monotonic()
        with self.lock:
            for t in [t for t, (exp, _, _) in self.kept.items() if exp < now]:
                del self.kept[t]
            got = self.kept.get(token)
            return None if got is None else (got[1], got[2])


class Authenticator:
    """Bearer tokens reviewed by the API server (TokenReview); `allowed`: user names, or
    "group:NAME" for every member of a group."""

    def __init__(self, review: Callable[[str], tuple[str, list[str]] | None], allowed: list[str]) -> None:
        self.review, self.allowed = review, set(allowed)
        self.lock = threading.Lock()
        self.cache: dict[str, tuple[float, str | None]] = {}

    def user(self, header: str) -> tuple[int, str]:
        """(0, user) when served; else (401 or 403, why)."""
        if not header.startswith("Bearer "):
            return 401, "no bearer token"
        token = header[len("Bearer "):].strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self.lock:
            got = self.cache.get(digest)
        if got is None or got[0] < now:
            who = self.review(token)
            name = None
            if who is not None:
                user, groups = who
                if user in self.allowed or any(f"group:{g}" in self.allowed for g in groups):
                    name = user
                else:
                    name = ""
            with self.lock:
                if len(self.cache) > 10_000:
                    self.cache.clear()
                self.cache[digest] = got = (now + AUTH_TTL, name)
        if got[1] is None:
            return 401, "the API server does not know this token"
        if not got[1]:
            return 403, "this user is not one the relay serves (--allow)"
        return 0, got[1]


class Route:
    def __init__(self, feed: Feed, list_kind: str, absent: Callable[[], bool]) -> None:
        self.feed, self.list_kind, self.absent = feed, list_kind, absent


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RelayHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, code: int, reason: str, message: str) -> None:
        self._send(code, dumps(status(code, reason, message)))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        srv = self.server
        if url.path in ("/healthz", "/livez"):
            return self._send(200, b"ok", "text/plain")
        if url.path == "/readyz":
            ready = all(r.feed.synced.is_set() for r in srv.routes.values())
            return self._send(200 if ready else 503, b"ok" if ready else b"not synced", "text/plain")
        if url.path == "/metrics":
            return self._send(200, srv.metrics().encode(), "text/plain; version=0.0.4")
        code, who = srv.auth.user(self.headers.get("Authorization", ""))
        if code:
            return self._fail(code, "Unauthorized" if code == 401 else "Forbidden", who)
        route = srv.routes.get(url.path)
        if route is None:
            return self._fail(404, "NotFound", f"the relay serves lists and watches of {', '.join(srv.routes)}")
        if route.absent():
            return self._fail(404, "NotFound", f"{route.feed.kind}: not served by the API server")
        if not route.feed.synced.is_set():
            return self._fail(503, "ServiceUnavailable", f"the relay has not listed {route.feed.kind}s yet")
        for selector in ("labelSelector", "fieldSelector"):
            if q.get(selector):
                return self._fail(400, "BadRequest", f"{selector}: the relay serves whole lists and watches only")
        if q.get("watch") in ("true", "1"):
            return self._watch(route, q)
        return self._list(route, q)

    def _list(self, route: Route, q: dict[str, str]) -> None:
        srv = self.server
        try:
            limit = max(0, int(q.get("limit") or 0))
        except ValueError:
            return self._fail(400, "BadRequest", "limit: a number")
        if q.get("continue"):
            token, _, offset_text = q["continue"].partition(":")
            got = srv.pages.get(token)
            if got is None or not offset_text.isdigit():
                return self._fail(410, "Expired", "the continue token is too old or unknown: list again")
            rv, items = got
            offset = int(offset_text)
        else:
            rv, items = route.feed.snapshot()
            offset, token = 0, ""
        end = offset + limit if limit else len(items)
        cont = ""
        if end < len(items):
            token = token or srv.pages.put(rv, items)
            cont = f"{token}:{end}"
        meta = {"resourceVersion": rv, **({"continue": cont} if cont else {})}
        head = (b'{"apiVersion":"' + route.feed.api_version.encode() + b'","kind":"' + route.list_kind.encode()
                + b'","metadata":' + dumps(meta) + b',"items":[')
        self._send(200, head + b",".join(items[offset:end]) + b"]}")
        srv.count("lists")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, route: Route, q: dict[str, str]) -> None:
        feed, srv = route.feed, self.server
        try:
            timeout = min(WATCH_MAX, max(1, int(q.get("timeoutSeconds") or WATCH_MAX)))
        except ValueError:
            return self._fail(400, "BadRequest", "timeoutSeconds: a number")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        srv.count("watches")
        deadline = time.monotonic() + timeout
        last_sent = time.monotonic()
        try:
            try:
                generation, pos, first = feed.start(q.get("resourceVersion", ""))
                if first:
                    self._chunk(b"".join(first))
                while not srv.stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    pos, lines, rv = feed.read(generation, pos, min(left, BOOKMARK_EVERY, 5.0))
                    now = time.monotonic()
                    if lines:
                        self._chunk(b"".join(lines))
                        srv.count("events_sent", len(lines))
                        last_sent = now
                        # a thread per watch: under churn every event would wake every watch (K
                        # wakeups per event); sending what gathered in a short window bounds that
                        # to K per window — at most COALESCE more latency per event
                        if srv.stopping.wait(COALESCE):
                            break
                    elif bookmarks and now - last_sent >= BOOKMARK_EVERY and rv:
                        self._chunk(b'{"type":"BOOKMARK","object":{"kind":"' + feed.kind.encode()
                                    + b'","apiVersion":"' + feed.api_version.encode()
                                    + b'","metadata":{"resourceVersion":' + dumps(rv) + b"}}}\n")
                        last_sent = now
            except Gone as e:
                self._chunk(b'{"type":"ERROR","object":' + dumps(status(410, "Expired", str(e))) + b"}\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True


class RelayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], routes: dict[str, Route], auth: Authenticator,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, Handler)
        self.routes, self.auth, self.pages = routes, auth, Pages()
        self.stopping = threading.Event()
        self._counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS's handshake in the request's own thread (a slow client must not hold up accept)."""
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def count(self, what: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def metrics(self) -> str:
        lines = []
        with self._count_lock:
            counts = dict(self._counts)
        for what, n in sorted(counts.items()):
            lines.append(f'podnet_relay_{what}_total {n}')
        for _path, r in sorted(self.routes.items()):
            f = r.feed
            lines.append(f'podnet_relay_objects{{kind="{f.kind}"}} {len(f.objects)}')
            lines.append(f'podnet_relay_events_total{{kind="{f.kind}"}} {f.sent}')
            lines.append(f'podnet_relay_quiet_changes_total{{kind="{f.kind}"}} {f.quiet}')
        return "\n".join(lines) + "\n"

    def handle_error(self, request: Any, client_address: Any) -> None:
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, ConnectionError)):
            log.info("relay connection from %s: %s", client_address, e)
        else:
            log.warning("relay request from %s failed", client_address, exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

