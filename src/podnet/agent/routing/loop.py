"""The reconcile loop: keeps this node announced in the datastore and the kernel's cross-node
state equal to what the datastore says, through whichever backend the node runs.

A pass runs on every change the datastore reports that moves a route (a node joined or left, a
pod CIDR claimed or released: converges in well under a second), after its watch is
(re)established (a full resync: events may have been missed), every `interval` seconds
regardless (flannel's routeCheck: periodic reconcile beats trusting every event), and when
netlink reports one of podnet's routes or neighbour entries deleted (by hand, or by a link going
away), so it comes back at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from ...net.rtnl import Rtnl, open_rtnl, watch_podnet_state
from ..peers import Peers
from .base import Backend, Reconcile

log = logging.getLogger(__name__)

HostOpener = Callable[[], AbstractContextManager[Rtnl]]
KernelWatch = Callable[[Callable[[], None]], Callable[[], None]]


class RoutingAgent:
    COALESCE = 0.02     # a burst of events (pods starting) becomes one pass

    def __init__(self, peers: Peers, backend: Backend, addr: str, heartbeat: float = 3.0, interval: float = 1.0,
                 on_pass: Callable[[Reconcile], None] | None = None,
                 on_ready: Callable[[RoutingAgent], None] | None = None,
                 prepare: Callable[[], None] | None = None,
                 on_fail: Callable[[str], None] | None = None,
                 host: HostOpener = open_rtnl, watch_kernel: KernelWatch = watch_podnet_state) -> None:
        """prepare: run (and retried) before joining, e.g. claim a subnet; on_fail: told why a
        pass failed (readiness shows it until ready); host/watch_kernel: the kernel (a fake in
        unit tests)."""
        self.peers, self.backend, self.addr = peers, backend, addr
        self.heartbeat, self.interval = heartbeat, interval
        self.on_pass, self.on_ready, self.prepare, self.on_fail = on_pass, on_ready, prepare, on_fail
        self.host, self.watch_kernel = host, watch_kernel
        self.joined = False
        self._published: dict[str, str] = {}
        self.passes = 0
        self.ready = threading.Event()       # joined and one full pass done
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._unwatch: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    def info(self) -> dict[str, str]:
        """This node's record for the others: address, backend, and the backend's own data."""
        return {"addr": self.addr, "backend": self.backend.name, **self.backend.publish()}

    def pod_mtu(self) -> int:
        with self.host() as h:
            return self.backend.pod_mtu(h)

    def start(self) -> None:
        if hasattr(self.backend, "wake"):       # a backend with a process of its own wakes the loop when it dies
            self.backend.wake = self._wake.set
        with self.host() as h:
            self.backend.start(h)
        self._unwatch.append(self.peers.watch(self._wake.set))
        self._unwatch.append(self.watch_kernel(self._wake.set))
        self._thread = threading.Thread(target=self._loop, name="podnet-routing", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop reconciling; routes stay (pods keep working while the agent restarts)."""
        self._stop.set()
        self._wake.set()
        for unwatch in self._unwatch:
            unwatch()
        if self._thread is not None:
            self._thread.join(5)
        self.backend.stop()

    def reconcile_once(self) -> Reconcile:
        self._handle_requests()
        owners = self.peers.owners()
        nodes = self.peers.nodes()
        with self.host() as h:
            return self.backend.apply(h, nodes, owners)

    def _handle_requests(self) -> None:
        """What an operator asked of this node through the datastore (a backend that knows the
        request does it); what the node publishes may change with it (a new key): published
        again at once, so the other nodes follow."""
        handler = getattr(self.backend, "request", None)
        for name in self.peers.requests():
            if handler is not None and handler(name):
                log.info("done: %s", name)
            else:
                log.warning("request %r: the %s backend does not know it; dropped", name, self.backend.name)
            self.peers.request_done(name)
        if self.joined and self.info() != self._published:
            self._published = self.info()
            self.peers.join(self._published)

    def step(self, now: float, last_heartbeat: float) -> float:
        """One pass: join (or renew), the periodic housekeeping, reconcile.  Returns the time of
        the last heartbeat."""
        if not self.joined:
            if self.prepare:
                self.prepare()
            self._published = self.info()
            self.peers.join(self._published)
            self.joined = True
            last_heartbeat = now
        elif now - last_heartbeat >= self.heartbeat:
            self.peers.heartbeat()
            last_heartbeat = now
        result = self.reconcile_once()
        self.passes += 1
        if result.changed:
            log.info("routes: +%s -%s refused %s", result.added, result.removed, result.refused)
        if self.on_pass:
            self.on_pass(result)
        if not self.ready.is_set():
            self.ready.set()
            if self.on_ready:
                self.on_ready(self)
        return last_heartbeat

    def _loop(self) -> None:
        """The datastore may be down when the agent starts: it keeps serving CNI requests (DEL
        must work) and retries here; the node only becomes ready once it has joined."""
        last_heartbeat = last_housekeeping = time.monotonic()
        failures = 0
        from ..metrics import ROUTING_WAKEUPS
        while not self._stop.is_set():
            now = time.monotonic()
            ROUTING_WAKEUPS.inc()
            try:
                if self.joined and now - last_housekeeping >= self.interval:
                    last_housekeeping = now
                    self.peers.housekeeping()
                last_heartbeat = self.step(now, last_heartbeat)
                failures = 0
            except Exception as e:  # noqa: BLE001 - datastore or netlink trouble: log, try again next pass
                failures += 1
                log.warning("routing pass failed: %s", e)
                if self.on_fail and not self.ready.is_set():
                    self.on_fail(str(e))
            wait = min(self.interval, max(0.0, self.heartbeat - (time.monotonic() - last_heartbeat)))
            if failures:      # back off (0.1 s doubling, at most the pass interval): never a busy loop
                wait = max(wait, min(self.interval, 0.1 * 2 ** min(failures - 1, 8)))
            if self._wake.wait(wait):
                self._stop.wait(self.COALESCE)
                self._wake.clear()
