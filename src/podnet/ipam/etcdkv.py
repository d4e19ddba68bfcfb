"""A small synchronous key-value facade over etcd v3 — the only module that imports the
etcd client (aetcd, gRPC; see the README for why that one).

aetcd is asyncio-based; podnet's plugins are synchronous and run in agent threads, so
one event loop runs in a daemon thread per process and calls are submitted to it.
Every call has a deadline: an unreachable etcd raises StoreUnavailable (CNI code 11)
quickly instead of hanging a pod's ADD.  Several endpoints: the next one is tried when
one does not answer.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import aetcd  # pinned in pyproject: aetcd==1.0.0
import grpc
from aetcd import exceptions as etcd_errors
from aetcd import rpc, watcher

from .errors import StoreUnavailable
from .kv import Entry, Txn

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
# gRPC shares subchannels (one per address) across every channel of a process, with their
# reconnect backoff: a client made after an etcd member came back would reuse the subchannel
# that failed while it was down and fail at once for up to a backoff period.  Each client gets
# its own subchannels, and backs off briefly: failover is podnet's job (the next endpoint).
BACKOFF_MAX = 5.0     # seconds between watch reconnects while etcd stays away
CHANNEL_OPTIONS = {"grpc.use_local_subchannel_pool": 1, "grpc.initial_reconnect_backoff_ms": 200,
                   "grpc.min_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 2000}


@dataclass(frozen=True)
class TLSFiles:
    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None


class _TLSClient(aetcd.Client):  # type: ignore[misc]  # aetcd ships no type information
    """aetcd 1.0 opens plaintext channels only.  This client opens a TLS channel and wires
    the same stubs aetcd's own connect() does (pinned version: see pyproject)."""

    def __init__(self, tls: TLSFiles, **kw: Any) -> None:
        super().__init__(**kw)
        self._tls = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key,
                                                 certificate_chain=tls.cert)

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = rpc.secure_channel(f"{self._host}:{self._port}", self._tls, options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
        self._connected.set()


class _Loop:
    """One asyncio loop in a daemon thread, shared by every EtcdKV of the process."""
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="podnet-etcd", daemon=True).start()
                cls._loop = loop
            return cls._loop


def parse_endpoint(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"etcd endpoint {url!r} is not http://host:port")
    return host.strip("[]"), int(port)


class EtcdKV:
    def __init__(self, endpoints: list[str], timeout: float = DEFAULT_TIMEOUT, tls: TLSFiles | None = None) -> None:
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.tls = tls
        self.timeout = timeout
        self._current = 0
        self._client: aetcd.Client | None = None
        self._loop = _Loop.get()

    # ------------------------------------------------------------ plumbing
    def _run(self, make: Any) -> Any:
        """Run make(client) on the loop; on an unreachable endpoint try the next ones."""
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            fut = asyncio.run_coroutine_threadsafe(self._call(make), self._loop)
            try:
                return fut.result(self.timeout)
            except (FutureTimeout, etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError,
                    grpc.RpcError, OSError) as e:
                fut.cancel()
                last = e
                self._rotate()
            except etcd_errors.ClientError as e:
                last = e
                self._rotate()
        host, port = self.endpoints[self._current]
        raise StoreUnavailable(f"etcd unavailable ({host}:{port} and {len(self.endpoints) - 1} other(s)): "
                               f"{type(last).__name__}: {last}") from None

    def _new_client(self, endpoint: int, rpc_timeout: int | None) -> aetcd.Client:
        """A client for endpoint number `endpoint`; rpc_timeout None for a watch (a deadline
        would cut its stream)."""
        host, port = self.endpoints[endpoint % len(self.endpoints)]
        if self.tls is not None:
            return _TLSClient(self.tls, host=host, port=port, timeout=rpc_timeout, options=CHANNEL_OPTIONS)
        return aetcd.Client(host=host, port=port, timeout=rpc_timeout, options=CHANNEL_OPTIONS)

    async def _call(self, make: Any) -> Any:
        if self._client is None:
            self._client = self._new_client(self._current, int(self.timeout) or 1)
            await asyncio.wait_for(self._client.connect(), self.timeout)
        coro: Coroutine[Any, Any, Any] = make(self._client)
        return await asyncio.wait_for(coro, self.timeout)

    def _rotate(self) -> None:
        client, self._client = self._client, None
        self._current = (self._current + 1) % len(self.endpoints)
        if client is not None:
            asyncio.run_coroutine_threadsafe(client.close(), self._loop)

    def close(self) -> None:
        if self._client is not None:
            fut = asyncio.run_coroutine_threadsafe(self._client.close(), self._loop)
            try:
                fut.result(2)
            except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
                pass
            self._client = None

    # ------------------------------------------------------------ KV
    def get(self, key: str) -> Entry | None:
        async def op(c: aetcd.Client) -> Any:
            return await c.get(key.encode())
        r = self._run(op)
        return None if r is None else Entry(key, r.value, r.mod_revision)

    def get_prefix(self, prefix: str) -> list[Entry]:
        async def op(c: aetcd.Client) -> Any:
            return await c.get_prefix(prefix.encode())
        return [Entry(kv.key.decode(), kv.value, kv.mod_revision) for kv in self._run(op)]

    def txn(self, t: Txn) -> int:
        """The new revision when every compare held and the writes were applied, atomically; else 0."""
        async def op(c: aetcd.Client) -> Any:
            tx = c.transactions
            compares = [tx.mod(k.encode()) == rev if rev else tx.version(k.encode()) == 0 for k, rev in t.compares]
            success = [tx.put(k.encode(), v, lease=t.lease or None) for k, v in t.puts]
            success += [tx.delete(k.encode()) for k in t.deletes]
            return await c.transaction(compare=compares, success=success, failure=[])
        ok, responses = self._run(op)
        if not ok:
            return 0
        for r in responses:
            kind = r.WhichOneof("response")
            return int(getattr(r, kind).header.revision)
        return 1

    def delete_prefix(self, prefix: str) -> None:
        async def op(c: aetcd.Client) -> Any:
            return await c.delete_prefix(prefix.encode())
        self._run(op)

    # ------------------------------------------------------------ watch
    def watch_prefix(self, prefix: str, on_event: Callable[[str, bytes | None], None]) -> Callable[[], None]:
        """Call on_event(key, value) for every change under `prefix` (value None: deleted), from
        the loop thread, until the returned function is called.  The watch has its own
        connection; when it breaks (etcd restarted, an endpoint died, the revision was
        compacted) it reconnects to the next endpoint and calls on_event("", None): events
        may have been missed, the caller resyncs."""
        stopped = threading.Event()

        async def run() -> None:
            attempt = failures = 0
            while not stopped.is_set():
                client = self._new_client(attempt, None)
                try:
                    await asyncio.wait_for(client.connect(), self.timeout)
                    events = await client.watch_prefix(prefix.encode())
                    host, port = self.endpoints[attempt % len(self.endpoints)]
                    log.info("etcd watch on %s established (%s:%d)", prefix, host, port)
                    failures = 0
                    on_event("", None)          # (re)established: whatever happened meanwhile
                    async for ev in events:
                        on_event(ev.kv.key.decode(), None if ev.kind == "DELETE" else ev.kv.value)
                    log.warning("etcd watch on %s ended by the server: reconnecting", prefix)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - any break of the stream: reconnect and resync
                    failures += 1
                    delay = min(BACKOFF_MAX, 0.5 * 2 ** min(failures - 1, 4))
                    log.warning("etcd watch on %s dropped (%s: %s): reconnecting in %.1fs", prefix,
                                type(e).__name__, e, delay)
                    attempt += 1
                    on_event("", None)
                    await asyncio.sleep(delay)
                finally:
                    try:
                        await client.close()
                    except Exception:  # noqa: BLE001 - closing a broken channel
                        pass

        fut = asyncio.run_coroutine_threadsafe(run(), self._loop)

        def cancel() -> None:
            stopped.set()
            fut.cancel()
        return cancel

    # ------------------------------------------------------------ leases
    def grant_lease(self, ttl: int) -> int:
        async def op(c: aetcd.Client) -> Any:
            return await c.lease(ttl)
        return int(self._run(op).id)

    def keep_alive(self, lease_id: int) -> None:
        async def op(c: aetcd.Client) -> Any:
            return await c.refresh_lease(lease_id)
        self._run(op)

    def lease_alive(self, lease_id: int) -> bool:
        async def op(c: aetcd.Client) -> Any:
            return await c.get_lease_info(lease_id)
        info = self._run(op)
        return int(getattr(info, "TTL", -1)) > 0
