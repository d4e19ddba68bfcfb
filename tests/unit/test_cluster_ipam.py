"""The cluster IPAM's contract suite over an in-memory KV with etcd's transaction semantics."""
from __future__ import annotations

import pytest

from podnet.ipam.memkv import MemKV
from tests.helpers.cluster_ipam_contract import *  # noqa: F403  (the suite itself)


@pytest.fixture
def kv() -> MemKV:
    """The store under test; tests/cluster/test_cluster_contract_etcd.py runs this same suite on etcd."""
    return MemKV()


