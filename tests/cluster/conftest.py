"""Fixtures of the etcd tier: a throwaway etcd on loopback per test (or per module)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.etcd import Etcd


def _running() -> Iterator[Etcd]:
    e = Etcd()
    try:
        e.wait_healthy()
        yield e
    finally:
        e.remove()


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    yield from _running()


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[Etcd]:
    yield from _running()
