"""One kind's objects and its recent events, kept as the bytes every watcher is sent: an event is
encoded once however many agents watch.

Positions: every event has an absolute index; a resourceVersion the relay handed out (an event's
object, a list, a bookmark) names the position after it, so a watch resumes exactly where that
agent stopped — by position, never by comparing versions (they are opaque).  The events kept are
bounded; a version older than them, or from before the upstream relisted (a new generation: the
relay's own view restarted), is answered 410 Gone and the agent relists, as from the API server.

A change the agents cannot see — same trimmed object, only its resourceVersion moved (a kubelet's
status heartbeat on a Node, a Pod's conditions) — is not sent: in a 5000-node cluster those are
most of the API server's events.  The object is still updated, so a later list has its version."""
from __future__ import annotations

import json
import threading
from collections import deque
from itertools import islice
from typing import Any

MAX_EVENTS = 50_000


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _rv_token(rv: str) -> bytes:
    return b'"resourceVersion":' + dumps(rv)


class Gone(Exception):
    """That resourceVersion is not (or no longer) a position of this feed: relist."""


class Feed:
    def __init__(self, kind: str, api_version: str, max_events: int = MAX_EVENTS) -> None:
        self.kind, self.api_version, self.max_events = kind, api_version, max_events
        self.cond = threading.Condition()
        self.objects: dict[str, bytes] = {}
        self.versions: dict[str, str] = {}
        self.events: deque[bytes] = deque()
        self.first = 0                         # absolute index of events[0]
        self.end = 0                           # absolute index after the last event
        self.at: dict[str, int] = {}           # resourceVersion → the position after it
        self._order: deque[tuple[int, str]] = deque()
        self.rv = ""
        self.generation = 0
        self.synced = threading.Event()
        self.sent = 0                          # events appended
        self.quiet = 0                         # changes not sent (only the version moved)

    # ------------------------------------------------------------------ upstream side
    def reset(self, objects: dict[str, dict[str, Any]], rv: str) -> None:
        """The upstream (re)listed: exactly these objects at `rv`; every open watch ends (410)."""
        encoded = {k: dumps(o) for k, o in objects.items()}
        versions = {k: str(o["metadata"].get("resourceVersion", "")) for k, o in objects.items()}
        with self.cond:
            self.objects, self.versions = encoded, versions
            self.generation += 1
            self.events.clear()
            self.first = self.end
            self.at, self._order = {}, deque()
            self._mark(rv)
            self.synced.set()
            self.cond.notify_all()

    def apply(self, kind: str, key: str, obj: dict[str, Any]) -> bool:
        """An upstream event (ADDED, MODIFIED, DELETED); whether it was sent on."""
        body = dumps(obj)
        rv = str(obj["metadata"].get("resourceVersion", ""))
        with self.cond:
            old, old_rv = self.objects.get(key), self.versions.get(key)
            if kind == "DELETED":
                self.objects.pop(key, None)
                self.versions.pop(key, None)
            else:
                self.objects[key], self.versions[key] = body, rv
                if (kind == "MODIFIED" and old is not None and old_rv is not None
                        and old.replace(_rv_token(old_rv), _rv_token(rv), 1) == body):
                    self.quiet += 1
                    self._mark(rv)
                    return False
            self.events.append(b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n")
            self.end += 1
            self.sent += 1
            while len(self.events) > self.max_events:
                self.events.popleft()
                self.first += 1
            self._mark(rv)
            self.cond.notify_all()
            return True

    def _mark(self, rv: str) -> None:
        """`rv` names the position now; the oldest names are forgotten past 2 × max_events (quiet
        changes add names without events: a heartbeat storm must not grow this without end)."""
        if not rv:
            return
        self.rv = rv
        self.at[rv] = self.end
        self._order.append((self.end, rv))
        while self._order and (self._order[0][0] < self.first or len(self._order) > 2 * self.max_events):
            index, old_mark = self._order.popleft()
            if self.at.get(old_mark) == index:
                del self.at[old_mark]

    # ------------------------------------------------------------------ agents' side
    def snapshot(self) -> tuple[str, list[bytes]]:
        """(resourceVersion, every object): a list answer."""
        with self.cond:
            return self.rv, list(self.objects.values())

    def start(self, rv: str) -> tuple[int, int, list[bytes]]:
        """Where a watch from `rv` begins: (generation, position, events to send first).  "" or
        "0": now, every current object first as ADDED (the API's "any version" watch)."""
        with self.cond:
            if rv in ("", "0"):
                added = [b'{"type":"ADDED","object":' + body + b"}\n" for body in self.objects.values()]
                return self.generation, self.end, added
            pos = self.at.get(rv)
            if pos is None or pos < self.first:
                raise Gone(f"too old resource version: {rv} ({self.rv})")
            return self.generation, pos, []

    def read(self, generation: int, pos: int, timeout: float) -> tuple[int, list[bytes], str]:
        """Events from `pos` (waiting up to `timeout` for one): (next position, events, the
        version a bookmark at the next position would carry)."""
        with self.cond:
            if generation == self.generation and pos >= self.end:
                self.cond.wait(timeout)
            if generation != self.generation or pos < self.first:
                raise Gone(f"the relay relisted {self.kind}s: relist")
            lines = list(islice(self.events, pos - self.first, None))
            return self.end, lines, self.rv
