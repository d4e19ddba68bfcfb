"""The agent's ready Neutron ports (kuryr learned that a port create on the pod's path is slow):
per (Neutron, network, node) a few podnet:pool ports are made ahead of time, paired on the node
port already; a pod's ADD claims one with an If-Match PUT (ipam/neutron.py) and the keeper makes
the next in the background.  Only the agent has a keeper: a launcher without one creates ports.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import Any

from .neutron import NeutronIpam, Port

log = logging.getLogger(__name__)


class PoolKeeper:
    def __init__(self) -> None:
        self._pools: dict[tuple[Any, ...], deque[Port]] = {}
        self._targets: dict[tuple[Any, ...], tuple[NeutronIpam, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.made = 0                         # ready ports made (metrics and tests)

    @staticmethod
    def key(ipam: NeutronIpam) -> tuple[Any, ...]:
        return (ipam.api.endpoint, ipam.s.network, ipam.s.subnet, ipam.s.node, ipam.s.cni_network, ipam.s.pairs)

    def want(self, ipam: NeutronIpam, size: int) -> None:
        """Keep `size` ready ports for this network (the first call adopts the ones Neutron holds)."""
        k = self.key(ipam)
        with self._lock:
            known = k in self._targets
            self._targets[k] = (ipam, size)
        if not known:
            with contextlib.suppress(Exception):
                ready = ipam.pool_ports()
                with self._lock:
                    self._pools.setdefault(k, deque()).extend(ready)
        self._wake.set()

    def take(self, ipam: NeutronIpam, container_id: str, ifname: str, name: str) -> Port | None:
        """A ready port made the pod's, or None (none ready, or each one lost its claim)."""
        k = self.key(ipam)
        while True:
            with self._lock:
                pool = self._pools.get(k)
                port = pool.popleft() if pool else None
            if port is None:
                self._wake.set()
                return None
            got = ipam.claim_pool_port(port, container_id, ifname, name)
            self._wake.set()
            if got is not None:
                return got

    def ready(self, ipam: NeutronIpam) -> int:
        with self._lock:
            return len(self._pools.get(self.key(ipam), ()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="neutron-pool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(30)
            self._wake.clear()
            with self._lock:
                targets = list(self._targets.items())
            for k, (ipam, size) in targets:
                self._fill(k, ipam, size)

    def _fill(self, k: tuple[Any, ...], ipam: NeutronIpam, size: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                if len(self._pools.get(k, ())) >= size:
                    return
            try:
                port = ipam.make_pool_port()
            except Exception as e:  # noqa: BLE001 - Neutron away or full: ADD creates ports itself meanwhile
                log.warning("neutron pool %s: cannot make a ready port: %s", ipam.s.network, e)
                return
            self.made += 1
            with self._lock:
                self._pools.setdefault(k, deque()).append(port)


_current: PoolKeeper | None = None


def install(keeper: PoolKeeper | None) -> None:
    global _current
    _current = keeper


def current() -> PoolKeeper | None:
    return _current
