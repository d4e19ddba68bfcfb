"""An informer: one kind of Kubernetes object kept in a local cache by list + watch.

The watch resumes from the last resourceVersion it saw (events and bookmarks, so a quiet watch
still advances) after any break; a 410 Gone (that version was compacted away) relists — the whole
truth again, so an object deleted during the gap goes too.  `trouble` says why the objects cannot
be followed right now (the API refuses or is away); the cache keeps its last state meanwhile.
lightkube is pinned: its watch() has no bookmark parameter, so its request builder is used.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from lightkube import Client  # pinned in pyproject: lightkube==1.0.1
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResource
from lightkube.types import on_error_raise

log = logging.getLogger(__name__)

OnEvent = Callable[[str, Any], None]          # ("ADDED"|"MODIFIED"|"DELETED", object)
OnRelist = Callable[[dict[str, Any]], None]   # the whole cache after a (re)list


LIST_CHUNK = 500           # objects per page of a list
ABSENT_RECHECK = 15.0      # seconds between looks for an optional kind the API does not serve


def not_served(e: Exception) -> bool:
    """The API does not serve this kind: a 404 Status, or — for an API group that is not served at
    all — a text/plain 404 ("404 page not found"), which the client raises as an HTTP error."""
    if isinstance(e, ApiError):
        return e.status.code == 404
    return getattr(getattr(e, "response", None), "status_code", None) == 404


def key_of(obj: Any) -> str:
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if getattr(meta, "namespace", None) else str(meta.name)


def _keyed(obj: Any, keep: Callable[[Any], Any] | None) -> tuple[str, Any]:
    """(key, what the cache keeps); a kept object with its own `key` string (PodInfo) lends it to
    the cache, so a big cluster's Pods have one key string each, not one per index."""
    if keep is None:
        return key_of(obj), obj
    kept = keep(obj)
    own = getattr(kept, "key", None)
    return (own if isinstance(own, str) and own else key_of(obj)), kept


class Informer:
    def __init__(self, client: Client, resource: Any, on_event: OnEvent | None = None,
                 on_relist: OnRelist | None = None, watch_timeout: int = 300, what: str = "",
                 fields: dict[str, str] | None = None, on_trouble: Callable[[], None] | None = None,
                 optional: bool = False, keep: Callable[[Any], Any] | None = None,
                 quiet_unchanged: bool = False) -> None:
        """keep: what the cache holds of each object (default: all of it) — at cluster scale an
        agent holds every Pod of the cluster, and a full Pod object is ~20× what it needs.
        quiet_unchanged: no on_event for a MODIFIED object whose kept part is unchanged (a Node's
        status heartbeat, when only its addresses and CIDRs are kept: in a 5000-node cluster
        those are many per second, and each would wake a whole routing pass)."""
        self.client, self.resource = client, resource
        self.keep = keep
        self.quiet_unchanged = quiet_unchanged
        self.on_event, self.on_relist, self.on_trouble = on_event, on_relist, on_trouble
        self.watch_timeout = watch_timeout
        self.what = what or resource.__name__
        self.fields = fields
        self.cache: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.trouble = ""
        self.optional = optional      # a CRD's kind: not installed (404) = none of them, looked for again later
        self.absent = False
        self.relists = 0
        self.list_rv = ""           # the last list's resourceVersion (on_relist may read it)
        self._stopped = threading.Event()

    def relist(self) -> str:
        """List everything (the cache becomes exactly that); the list's resourceVersion."""
        # in pages (a cluster's Pods are hundreds of megabytes of JSON in one answer); the pages
        # of one list are one snapshot at the first page's resourceVersion
        listing = self.client.list(self.resource, chunk_size=LIST_CHUNK, **self._scope())
        self.absent = False
        keep = self.keep
        objs = dict(_keyed(o, keep) for o in listing)
        with self.lock:
            self.cache = objs
        self.list_rv = str(listing.resourceVersion or "")
        self.relists += 1
        self.synced.set()
        if self.on_relist is not None:
            self.on_relist(dict(objs))
        return self.list_rv

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {}
        if issubclass(self.resource, NamespacedResource):
            scope["namespace"] = "*"
        if self.fields:
            scope["fields"] = self.fields
        return scope

    def start(self) -> Callable[[], None]:
        threading.Thread(target=self._run, name=f"podnet-watch-{self.what}", daemon=True).start()
        return self._stopped.set

    def _run(self) -> None:
        rv, failures = "", 0
        while not self._stopped.is_set():
            try:
                if not rv:
                    rv = self.relist()
                for kind, obj in self._watch_from(rv):
                    if self._stopped.is_set():
                        return
                    rv = str(obj.metadata.resourceVersion or rv)
                    if failures or self.trouble:
                        failures = 0
                        self._set_trouble("")
                    if kind == "BOOKMARK":
                        continue
                    key, kept = _keyed(obj, self.keep)
                    with self.lock:
                        if kind == "DELETED":
                            self.cache.pop(key, None)
                            unchanged = False
                        else:
                            unchanged = kind == "MODIFIED" and self.quiet_unchanged and self.cache.get(key) == kept
                            self.cache[key] = kept
                    if self.on_event is not None and not unchanged:
                        self.on_event(kind, kept)
            except ApiError as e:
                if self._stopped.is_set():
                    return
                if self.optional and not_served(e):
                    self._absent()
                    rv = ""
                    self._stopped.wait(ABSENT_RECHECK)
                    continue
                if e.status.code == 410:
                    log.warning("%s watch: resourceVersion %s is gone (410, compacted): relisting", self.what, rv)
                    rv = ""
                    continue
                failures += 1
                self._set_trouble(f"the API refused to {'watch' if rv else 'list'} {self.what}: "
                                  f"{e.status.code} {e.status.reason or ''} {e.status.message or ''}".strip())
            except Exception as e:  # noqa: BLE001 - API server gone, stream cut: resume from rv
                if self._stopped.is_set():
                    return
                if self.optional and not_served(e):
                    self._absent()
                    rv = ""
                    self._stopped.wait(ABSENT_RECHECK)
                    continue
                failures += 1
                self._set_trouble(f"the API server is unreachable ({type(e).__name__}: {e})")
            if failures:
                self._stopped.wait(min(10.0, 0.5 * 2 ** min(failures - 1, 5)))

    def _absent(self) -> None:
        """The kind is not served (its CRD is not installed): an empty, synced cache."""
        if not self.absent:
            log.info("%s: not served by the API (CRD not installed): none, looking again every %.0f s", self.what,
                     ABSENT_RECHECK)
        self.absent = True
        with self.lock:
            had, self.cache = bool(self.cache), {}
        self.list_rv = ""
        first = not self.synced.is_set()
        self.synced.set()
        if (first or had) and self.on_relist is not None:
            self.on_relist({})

    def _set_trouble(self, why: str) -> None:
        if why == self.trouble:
            return
        if why:
            log.warning("%s watch: %s; what is programmed so far stays", self.what, why)
        else:
            log.info("following %s again", self.what)
        self.trouble = why
        if self.on_trouble is not None:
            self.on_trouble()

    def _watch_from(self, rv: str) -> Any:
        timeout = int(self.watch_timeout * random.uniform(1.0, 1.2)) or 1
        gc: Any = self.client._client
        params: dict[str, Any] = {"resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": timeout}
        if self.fields:
            params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in self.fields.items())
        scope = self._scope()
        br = gc.prepare_request("list", res=self.resource, namespace=scope.get("namespace"), watch=True, params=params)
        return gc.watch(br, on_error=on_error_raise)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.cache)
