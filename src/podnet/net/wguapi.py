"""WireGuard's cross-platform configuration protocol (UAPI, https://www.wireguard.com/xplatform/):
`get=1` / `set=1` key=value lines over the device's unix socket — what `wg` itself speaks to
wireguard-go.  Keys travel as hex there and as base64 everywhere humans see them.

Only what podnet needs: read the device (its port and every peer with its endpoint, allowed
IPs and last handshake), set the private key and port, add/update/remove peers one by one (a
peer left unchanged keeps its session: no new handshake, no lost packet).  Keys are X25519
(the `cryptography` package, already podnet's dependency).
"""
from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass, field

from .errors import NetError


class UapiError(NetError):
    """The device refused a request (errno=N), or its socket does not answer."""


@dataclass
class PeerState:
    public_key: str                     # base64
    endpoint: str = ""                  # "ip:port"
    allowed_ips: list[str] = field(default_factory=list)
    keepalive: int = 0
    last_handshake: float = 0.0         # unix time; 0: never
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass
class DeviceState:
    public_key: str = ""                # derived from the private key (UAPI gives only that)
    listen_port: int = 0
    peers: dict[str, PeerState] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerSpec:
    """A peer as podnet wants it."""
    public_key: str                     # base64
    endpoint: str                       # "ip:port" ("[v6]:port")
    allowed_ips: tuple[str, ...]
    keepalive: int = 25


# ------------------------------------------------------------------ keys
def new_private_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def public_key(private_b64: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    key = X25519PrivateKey.from_private_bytes(decode_key(private_b64))
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def decode_key(b64: str) -> bytes:
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"not a WireGuard key (32 bytes, base64): {b64[:12]!r}…")
    return raw


def fingerprint(b64: str) -> str:
    """What `node ls` shows: the key's first 8 base64 characters (as `wg` users recognise it)."""
    return f"{b64[:8]}…" if b64 else ""


def _hex(b64: str) -> str:
    return decode_key(b64).hex()


def _b64(hexkey: str) -> str:
    return base64.b64encode(bytes.fromhex(hexkey)).decode()


# ------------------------------------------------------------------ the socket
class Uapi:
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path, self.timeout = path, timeout

    def _call(self, request: str) -> list[tuple[str, str]]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                s.sendall(request.encode())
                buf = b""
                while not buf.endswith(b"\n\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as e:
            raise UapiError(f"WireGuard device socket {self.path}: {e.strerror or e}") from None
        out = [(k, v) for k, _, v in (line.partition("=") for line in buf.decode().splitlines()) if _]
        errno_ = next((v for k, v in out if k == "errno"), None)
        if errno_ is None:
            raise UapiError(f"WireGuard device socket {self.path}: no answer")
        if errno_ != "0":
            raise UapiError(f"WireGuard device refused the request: errno {errno_} ({os.strerror(int(errno_))})")
        return [(k, v) for k, v in out if k != "errno"]

    def alive(self) -> bool:
        try:
            self._call("get=1\n\n")
            return True
        except UapiError:
            return False

    def get(self) -> DeviceState:
        dev = DeviceState()
        peer: PeerState | None = None
        for k, v in self._call("get=1\n\n"):
            if k == "private_key":
                dev.public_key = public_key(_b64(v))
            elif k == "listen_port":
                dev.listen_port = int(v)
            elif k == "public_key":
                peer = PeerState(_b64(v))
                dev.peers[peer.public_key] = peer
            elif peer is None:
                continue
            elif k == "endpoint":
                peer.endpoint = v
            elif k == "allowed_ip":
                peer.allowed_ips.append(v)
            elif k == "persistent_keepalive_interval":
                peer.keepalive = int(v)
            elif k == "last_handshake_time_sec":
                peer.last_handshake += int(v)
            elif k == "last_handshake_time_nsec":
                peer.last_handshake += int(v) / 1e9
            elif k == "rx_bytes":
                peer.rx_bytes = int(v)
            elif k == "tx_bytes":
                peer.tx_bytes = int(v)
        return dev

    def set_device(self, private_b64: str, port: int) -> None:
        self._call(f"set=1\nprivate_key={_hex(private_b64)}\nlisten_port={port}\n\n")

    def set_peers(self, upsert: list[PeerSpec], remove: list[str]) -> None:
        """One request: every peer in `upsert` added or updated in place (its allowed IPs
        replaced), every key in `remove` removed."""
        if not upsert and not remove:
            return
        lines = ["set=1"]
        for key in remove:
            lines += [f"public_key={_hex(key)}", "remove=true"]
        for p in upsert:
            lines += [f"public_key={_hex(p.public_key)}", f"endpoint={p.endpoint}",
                      f"persistent_keepalive_interval={p.keepalive}", "replace_allowed_ips=true",
                      *(f"allowed_ip={a}" for a in p.allowed_ips)]
        self._call("\n".join(lines) + "\n\n")


def differs(have: PeerState, want: PeerSpec) -> bool:
    return (have.endpoint != want.endpoint or have.keepalive != want.keepalive
            or sorted(have.allowed_ips) != sorted(want.allowed_ips))
