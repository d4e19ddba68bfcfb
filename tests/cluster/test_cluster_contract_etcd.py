"""The cluster IPAM's contract suite (tests/unit/test_cluster_ipam.py), run again on real etcd:
the same rules must hold on the store that production uses, not only on the in-memory model."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.ipam.kv import Entry, Txn
from tests.helpers.cluster_ipam_contract import *  # noqa: F403  (the suite itself)
from tests.helpers.etcd import Etcd, have_etcd

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")


class CountingEtcd:
    """EtcdKV plus the counters and lease expiry the suite inspects (MemKV has them natively)."""

    def __init__(self, url: str) -> None:
        from podnet.ipam.etcdkv import EtcdKV
        self.kv = EtcdKV([url], timeout=20)
        self.txns = self.writes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        return self.kv.get(key)

    def get_prefix(self, prefix: str) -> list[Entry]:
        return self.kv.get_prefix(prefix)

    def txn(self, t: Txn) -> int:
        rev = self.kv.txn(t)
        with self._lock:
            self.txns += 1
            self.writes += 1 if rev else 0
        return rev

    def grant_lease(self, ttl: int) -> int:
        return self.kv.grant_lease(ttl)

    def keep_alive(self, lease: int) -> None:
        self.kv.keep_alive(lease)

    def watch_prefix(self, prefix: str, on_change: Any) -> Any:
        return self.kv.watch_prefix(prefix, on_change)

    def expire_lease(self, lease: int) -> None:
        """Revoking a lease deletes its keys at once, as expiry would."""
        import aetcd

        async def op(c: aetcd.Client) -> Any:
            return await c.revoke_lease(lease)
        self.kv._run(op)


@pytest.fixture
def kv(etcd_server: Etcd) -> Iterator[CountingEtcd]:  # overrides the suite's MemKV fixture
    c = CountingEtcd(etcd_server.url)
    for prefix in ("/podnet/", "/second/"):
        c.kv.delete_prefix(prefix)
    yield c
    c.kv.close()
