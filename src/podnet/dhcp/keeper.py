"""The agent's DHCP leases: acquired for a pod's ADD, renewed for as long as the pod lives,
released on DEL or GC — what the reference plugin needs a separate `dhcp daemon` for.

Every lease is also a small JSON file under <state dir>/dhcp/, so a restarted agent learns
the leases of running pods again and keeps renewing them.  Timers follow RFC 2131 §4.4.5:
renew (unicast to the leasing server) from T1, rebind (broadcast, any server) from T2, and
when the lease really expires without an ACK the pod's address is removed — not before.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0      # a failed renew/rebind is tried again this much later (sooner near expiry:
                       # half the time left, as RFC 2131 §4.4.5 suggests)


@dataclass
class Lease:
    client_id: str                 # containerID/network/ifname (the reference plugin's client ID)
    network: str
    container_id: str
    ifname: str
    netns: str
    mac: str
    ip: str
    prefixlen: int
    server_ip: str
    server_mac: str
    acquired: float                # unix time of the last ACK
    lease_time: int
    t1: int
    t2: int
    routers: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: str = ""
    routes: list[tuple[str, str]] = field(default_factory=list)    # (dst, gw) from options 121 / 33
    provide: list[tuple[int, str]] = field(default_factory=list)   # option, hex value (sent again on renew)
    request: list[int] = field(default_factory=list)
    next_try: float = 0.0          # after a failed renew: not before this time
    renewals: int = 0
    wire_id: str = ""              # hex of the client identifier sent (option 61); "" = client_id

    def wire(self) -> bytes:
        return bytes.fromhex(self.wire_id) if self.wire_id else self.client_id.encode()

    @property
    def expires(self) -> float:
        return self.acquired + self.lease_time

    def provide_bytes(self) -> list[tuple[int, bytes]]:
        return [(code, bytes.fromhex(v)) for code, v in self.provide]


def client_id(container_id: str, network: str, ifname: str) -> str:
    """The reference plugin's client identifier, so a DHCP server sees the same client."""
    return f"{container_id}/{network}/{ifname}"[:254]


class LeaseKeeper:
    def __init__(self, state_dir: str, timeout: float = 10.0) -> None:
        self.dir = os.path.join(state_dir, "dhcp")
        self.timeout = timeout
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ persistence
    def _path(self, cid: str) -> str:
        return os.path.join(self.dir, hashlib.sha256(cid.encode()).hexdigest()[:32] + ".json")

    def _save(self, lease: Lease) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self._path(lease.client_id) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(lease), f)
        os.replace(tmp, self._path(lease.client_id))

    def _forget(self, cid: str) -> None:
        with self._lock:
            self._leases.pop(cid, None)
        try:
            os.unlink(self._path(cid))
        except FileNotFoundError:
            pass

    def stored(self) -> list[tuple[str, Lease]]:
        """(file name, lease) of every readable lease file; changes nothing."""
        out: list[tuple[str, Lease]] = []
        if not os.path.isdir(self.dir):
            return out
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json"):
                lease = self._read_file(os.path.join(self.dir, name))
                if lease is None:
                    log.warning("dhcp: unreadable lease file %s", name)
                else:
                    out.append((name, lease))
        return out

    def load(self) -> list[Lease]:
        """Re-learn the leases of pods that still exist (after an agent restart)."""
        found = []
        for name, lease in self.stored():
            if not os.path.exists(lease.netns):
                log.info("dhcp: pod of %s is gone: forgetting its lease", lease.client_id)
                os.unlink(os.path.join(self.dir, name))
                continue
            with self._lock:
                self._leases[lease.client_id] = lease
            found.append(lease)
        return found

    # ------------------------------------------------------------ operations
    def get(self, cid: str) -> Lease | None:
        with self._lock:
            return self._leases.get(cid)

    def leases(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def acquire(self, network: str, container_id: str, ifname: str, netns_path: str,
                provide: list[tuple[int, bytes]], request: tuple[int, ...], timeout: float | None = None,
                wire_id: bytes | None = None) -> Lease:
        """A lease for the pod's interface (the one already held on a repeated ADD).  wire_id:
        the client identifier to send when the config provides its own (option 61)."""
        from . import client
        cid = client_id(container_id, network, ifname)
        held = self.get(cid)
        if held is not None and held.expires > time.time():
            return held                                          # a repeated ADD
        ack, mac = client.acquire(netns_path, ifname, wire_id or cid.encode(), provide, request,
                                  timeout or self.timeout)
        lease = self._from_ack(cid, network, container_id, ifname, netns_path, mac, ack, provide, request)
        lease.wire_id = wire_id.hex() if wire_id else ""
        with self._lock:
            self._leases[cid] = lease
        self._save(lease)
        self._wake.set()
        log.info("dhcp: %s leased %s/%d from %s for %ds", cid, lease.ip, lease.prefixlen, lease.server_ip,
                 lease.lease_time)
        return lease

    def release(self, cid: str) -> Lease | None:
        """Stop renewing and tell the server (best effort: the pod's netns may be gone)."""
        lease = self.get(cid)
        if lease is None:
            lease = self._read(cid)
        if lease is None:
            return None
        self._forget(cid)
        from . import client
        try:
            client.release(lease.netns, lease.ifname, lease.wire(), lease.ip, lease.server_ip, lease.server_mac)
            log.info("dhcp: %s released %s", cid, lease.ip)
        except Exception as e:  # noqa: BLE001 - the pod (or its interface) is already gone
            log.info("dhcp: %s: could not send DHCPRELEASE for %s (%s); it expires at the server", cid, lease.ip, e)
        return lease

    def _read(self, cid: str) -> Lease | None:
        return self._read_file(self._path(cid))

    @staticmethod
    def _read_file(path: str) -> Lease | None:
        try:
            with open(path) as f:
                raw = json.load(f)
            raw["routes"] = [tuple(r) for r in raw.get("routes", [])]
            raw["provide"] = [tuple(p) for p in raw.get("provide", [])]
            return Lease(**raw)
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def _from_ack(cid: str, network: str, container_id: str, ifname: str, netns_path: str, mac: str, ack: Any,
                  provide: list[tuple[int, bytes]], request: tuple[int, ...]) -> Lease:
        mask = ack.mask or "255.255.255.0"
        prefixlen = ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
        lt = ack.lease_time or 3600
        routes = list(ack.classless) if ack.classless else list(ack.static)
        return Lease(cid, network, container_id, ifname, netns_path, mac, ack.yiaddr, prefixlen, ack.server_id,
                     ack.server_mac, time.time(), lt, ack.t1 or lt // 2, ack.t2 or lt * 7 // 8,
                     ack.routers, ack.dns, ack.domain, routes, [(c, v.hex()) for c, v in provide], list(request))

    # ------------------------------------------------------------ renewal
    def start(self) -> None:
        self.load()
        self._thread = threading.Thread(target=self._loop, name="podnet-dhcp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            nxt = now + 30
            for lease in self.leases():
                due = max(lease.acquired + lease.t1, lease.next_try)
                if now >= lease.expires:
                    self._expired(lease)
                    continue
                if now >= due:
                    threading.Thread(target=self._renew, args=(lease,), daemon=True).start()
                    lease.next_try = now + max(0.5, min(RETRY_AFTER, (lease.expires - now) / 2))
                    due = lease.next_try
                nxt = min(nxt, due, lease.expires)
            self._wake.wait(max(0.2, nxt - time.time()))
            self._wake.clear()

    def _renew(self, lease: Lease) -> None:
        from . import client
        rebind = time.time() >= lease.acquired + lease.t2
        try:
            ack = client.renew(lease.netns, lease.ifname, lease.wire(), lease.ip, lease.server_ip,
                               lease.server_mac, lease.provide_bytes(), tuple(lease.request),
                               max(0.5, min(RETRY_AFTER - 1, (lease.expires - time.time()) / 2)), rebind)
        except Exception as e:  # noqa: BLE001 - no answer, NAK, pod gone: try again until expiry
            if self.get(lease.client_id) is not lease:
                return                                           # released or expired meanwhile
            if not os.path.exists(lease.netns):
                log.info("dhcp: pod of %s is gone: forgetting its lease", lease.client_id)
                self._forget(lease.client_id)
                return
            log.warning("dhcp: %s: %s of %s failed (%s); lease expires in %.0fs", lease.client_id,
                        "rebind" if rebind else "renew", lease.ip, type(e).__name__ + (f": {e}" if str(e) else ""),
                        lease.expires - time.time())
            return
        if self.get(lease.client_id) is not lease:
            return                                               # released meanwhile
        lease.acquired = time.time()
        lease.lease_time = ack.lease_time or lease.lease_time
        lease.t1 = ack.t1 or lease.lease_time // 2
        lease.t2 = ack.t2 or lease.lease_time * 7 // 8
        lease.server_ip, lease.server_mac = ack.server_id, ack.server_mac
        lease.next_try = 0.0
        lease.renewals += 1
        self._save(lease)
        log.info("dhcp: %s %s %s for %ds", lease.client_id, "rebound" if rebind else "renewed", lease.ip,
                 lease.lease_time)
        self._wake.set()

    def _expired(self, lease: Lease) -> None:
        """The lease ran out without an ACK: the address is no longer ours to use."""
        log.error("dhcp: lease of %s on %s expired without renewal: removing the address", lease.ip, lease.client_id)
        self._forget(lease.client_id)
        try:
            from ..net import netns
            from ..net.rtnl import open_rtnl
            with netns.opened(lease.netns) as fd, open_rtnl(fd) as pod:
                lk = pod.require_link(lease.ifname)
                pod.del_addr(lk.index, ipaddress.ip_interface(f"{lease.ip}/{lease.prefixlen}"))
        except Exception as e:  # noqa: BLE001 - the pod is gone: nothing to remove
            log.info("dhcp: could not remove %s from %s: %s", lease.ip, lease.client_id, e)


_KEEPER: LeaseKeeper | None = None


def install(keeper: LeaseKeeper) -> None:
    """The agent's keeper (set by `podnet agent`); without it podnet-dhcp cannot keep leases."""
    global _KEEPER
    _KEEPER = keeper


def current() -> LeaseKeeper | None:
    return _KEEPER
