"""`--encryption wireguard`: pod traffic between nodes encrypted, whatever the routing backend.

Every remote pod CIDR is routed into one WireGuard device per node (`podnet.wg`, wgdevice.py),
whose peers are the other nodes: public key and endpoint from their node records, AllowedIPs
= the pod CIDRs they own.  WireGuard is itself a tunnel over UDP between node addresses, so it
replaces the backend's own path (host-gw's next hops, VXLAN's encapsulation) instead of
carrying it: VXLAN inside WireGuard would cost 50 more bytes per packet and a second
encapsulation for nothing — Calico does the same.  BGP keeps running beside it (a backend with
`routes_beside_encryption`): BIRD still announces the node's CIDRs to the network (a top-of-rack
router) and brings the routes the network offers, while the other nodes' CIDRs go into the
tunnel — each side leaves the other's routes alone.  The pods' MTU is the underlay's minus
WireGuard's 60 bytes over IPv4 (80 over IPv6).

Keys: the private key is made once, kept 0600 under the agent's state dir (the same key after
a restart: peers need not change), the public key published in the node record (`wg_pubkey`).
`podnet node rotate-key NODE` asks the node's agent (through the datastore) for a new one.

Mixed clusters: a node that encrypts and one that does not never exchange pod traffic — each
routes the other's CIDRs as unreachable and says why in every pass (`refused`, `podnet node
ls`, the log): no plaintext on the wire, not even by the default route.

Node-originated traffic to remote pods (host-network processes) goes through the tunnel with a
source address this node holds inside its own pod CIDRs (a gateway address), which the peer
accepts; before this node holds one, such traffic leaves with its underlay address and the
peer's WireGuard drops it.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from typing import Any

from ...net.errors import NetError
from ...net.rtnl import PODNET_PROTO, RT_SCOPE_LINK, Rtnl
from ...net.wguapi import PeerSpec, Uapi, differs, fingerprint, new_private_key, public_key
from .base import (
    DEVICE,
    ENCRYPTION_KEY,
    UNREACHABLE,
    Backend,
    Families,
    Hop,
    IPNet,
    NodeIdentity,
    NodeInfo,
    Reconcile,
    encryption_mismatches,
    podnet_routes,
    sync_routes,
    unreachable_for,
)
from .daemon import DaemonError
from .wgdevice import WG_DEV, UserspaceDevice

log = logging.getLogger(__name__)

OVERHEAD = {4: 60, 6: 80}         # outer IP + UDP + WireGuard header and tag
DEFAULT_PORT = 51820
HANDSHAKE_STALE = 180.0           # wg's own rule of thumb: a peer's handshake older than this is not working
ROTATE_REQUEST = "rotate-key"


class WireGuard:
    """Wraps a backend: its name and start stay; routes and MTU become WireGuard's."""
    status_path = "/wireguard"

    def __init__(self, me: NodeIdentity, inner: Backend, state_dir: str, port: int = DEFAULT_PORT,
                 run_dir: str = "", log_path: str = "", external: bool = False) -> None:
        self.me, self.inner, self.port = me, inner, port
        self.name = inner.name
        self.key_path = os.path.join(state_dir, "wireguard", "private.key")
        self.private = self._load_or_make_key()
        self.public = public_key(self.private)
        self.device = UserspaceDevice(run_dir or "", log_path, external=external)
        self.uapi: Uapi = self.device.uapi
        self.families = Families()
        self._names: dict[str, str] = {}            # public key → node (for status)
        self._refused: dict[str, str] = {}          # node → why no traffic goes to it
        self._lock = threading.Lock()
        self.wake: Any = None                       # the reconcile loop's wake(): wireguard-go exited
        self.beside = bool(getattr(inner, "routes_beside_encryption", False))   # the inner backend runs too (bgp)
        if self.beside:
            inner.encrypted = True                  # type: ignore[attr-defined]

    # ------------------------------------------------------------ keys
    def _load_or_make_key(self) -> str:
        try:
            with open(self.key_path) as f:
                key = f.read().strip()
            public_key(key)              # a damaged file must not be used (nor silently replaced)
            return key
        except FileNotFoundError:
            return self._write_key(new_private_key())

    def _write_key(self, key: str) -> str:
        os.makedirs(os.path.dirname(self.key_path), mode=0o700, exist_ok=True)
        tmp = f"{self.key_path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.key_path)
        return key

    def rotate(self) -> None:
        """A new key pair: stored, set on the device (its sessions end, new handshakes follow as
        soon as the peers have the new public key), published by the next join."""
        with self._lock:
            self.private = self._write_key(new_private_key())
            self.public = public_key(self.private)
            self.uapi.set_device(self.private, self.port)
        log.info("WireGuard key rotated: public key now %s", fingerprint(self.public))

    def request(self, name: str) -> bool:
        """A request for this node from the datastore; True when handled."""
        if name == ROTATE_REQUEST:
            self.rotate()
            return True
        return False

    # ------------------------------------------------------------ the Backend protocol
    def start(self, host: Rtnl) -> None:
        if self.beside:
            self.inner.wake = self.wake             # type: ignore[attr-defined]
            self.inner.start(host)
        try:
            self._device(host)
        except DaemonError as e:      # e.g. wireguard-go not up yet: every pass tries again, readiness says why
            log.warning("%s", e)

    def publish(self) -> dict[str, str]:
        own = {"encryption": "wireguard", ENCRYPTION_KEY: self.public, "wg_port": str(self.port)}
        return {**self.inner.publish(), **own} if self.beside else own

    def _device(self, host: Rtnl) -> int:
        """podnet.wg up, with our key, port and MTU; its index."""
        restarted = self.device.ensure(self._exited)
        state = self.uapi.get()
        if restarted or state.public_key != self.public or state.listen_port != self.port:
            with self._lock:
                self.uapi.set_device(self.private, self.port)
        dev = host.require_link(WG_DEV)
        mtu = self._mtu(host)
        if mtu and dev.mtu != mtu:
            host.set_link(dev.index, mtu=mtu)
        if not dev.up:
            host.set_link(dev.index, state="up")
        return dev.index

    def _exited(self) -> None:
        if self.wake is not None:
            self.wake()

    def _mtu(self, host: Rtnl) -> int:
        under = host.link_holding(self.me.addr)
        return under.mtu - OVERHEAD[self.me.addr.version] if under is not None else 0

    def apply(self, host: Rtnl, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> Reconcile:
        idx = self._device(host)
        refused = encryption_mismatches(self.me.name, True, nodes)
        peers: dict[str, PeerSpec] = {}
        want: dict[IPNet, Hop] = {}
        for name, info in nodes.items():
            if name == self.me.name or name in refused:
                continue
            try:
                addr = ipaddress.ip_address(info["addr"])
                port = int(info.get("wg_port") or DEFAULT_PORT)
            except (KeyError, ValueError):
                continue
            cidrs = sorted((c for c, n in owners.items() if n == name), key=str)
            endpoint = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
            peers[info[ENCRYPTION_KEY]] = PeerSpec(info[ENCRYPTION_KEY], endpoint, tuple(map(str, cidrs)))
            self._names[info[ENCRYPTION_KEY]] = name
            want.update(dict.fromkeys(cidrs, DEVICE))
        self._sync_peers(peers)
        why = unreachable_for(refused, owners)
        want.update(dict.fromkeys(why, UNREACHABLE))
        self._refused = refused
        src = self._sources(host, owners)

        def add(dst: IPNet, _hop: Hop) -> None:
            host.add_route(dst, oif=idx, scope=RT_SCOPE_LINK, replace=True, proto=PODNET_PROTO,
                           src=src.get(dst.version))
        have = podnet_routes(host, self.families.update(nodes, owners))
        if not self.beside:
            return sync_routes(host, want, add, have=have, why=why)
        self.inner.leave_alone = set(want)          # type: ignore[attr-defined]
        inner = self.inner.apply(host, nodes, owners)
        mine = sync_routes(host, want, add, have={(d, h) for d, h in have if h in (DEVICE, UNREACHABLE)}, why=why)
        return Reconcile(inner.added + mine.added, inner.removed + mine.removed, inner.refused + mine.refused)

    def _sync_peers(self, want: dict[str, PeerSpec]) -> None:
        """Only what differs: an unchanged peer keeps its session."""
        have = self.uapi.get().peers
        upsert = [p for k, p in want.items() if k not in have or differs(have[k], p)]
        remove = [k for k in have if k not in want]
        if upsert or remove:
            self.uapi.set_peers(upsert, remove)
            log.info("WireGuard peers: +%d updated, -%d", len(upsert), len(remove))

    def _sources(self, host: Rtnl, owners: dict[IPNet, str]) -> dict[int, Any]:
        """Per family, an address this node holds inside one of its own pod CIDRs."""
        mine = [c for c, n in owners.items() if n == self.me.name]
        out: dict[int, Any] = {}
        for lk in host.links():
            for a in host.addrs(lk.index):
                if a.ip.version not in out and any(a.ip in c for c in mine):
                    out[a.ip.version] = a.ip
        return out

    def pod_mtu(self, host: Rtnl) -> int:
        return self._mtu(host)

    def stop(self) -> None:
        """The device (its wireguard-go process), its peers and the routes stay."""
        if self.beside:
            self.inner.stop()

    # ------------------------------------------------------------ status (node ls, doctor)
    def status(self) -> dict[str, Any]:
        try:
            state = self.uapi.get()
        except NetError as e:
            return {"device": WG_DEV, "implementation": self.device.kind, "error": str(e), "peers": []}
        now = time.time()
        peers = [{"node": self._names.get(k, ""), "public_key": k, "endpoint": p.endpoint,
                  "allowed_ips": p.allowed_ips, "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes,
                  "handshake_age": round(now - p.last_handshake, 1) if p.last_handshake else None}
                 for k, p in sorted(state.peers.items(), key=lambda kv: self._names.get(kv[0], kv[0]))]
        return {"device": WG_DEV, "implementation": self.device.kind, "public_key": self.public,
                "listen_port": state.listen_port, "pid": self.device.pid(), "peers": peers,
                "refused": dict(self._refused)}
