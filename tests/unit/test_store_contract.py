"""One contract, every Store: the allocator's rules hold over memory and file stores alike."""
from __future__ import annotations

import ipaddress
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from podnet.ipam import allocator
from podnet.ipam.errors import AddressUnavailable, RangeExhausted
from podnet.ipam.filestore import FileStore
from podnet.ipam.memstore import MemoryStore
from podnet.ipam.ranges import parse_range_sets
from podnet.ipam.store import Handle

ip = ipaddress.ip_address


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    return MemoryStore() if request.param == "memory" else FileStore(str(tmp_path), "net1")


SMALL = parse_range_sets({"subnet": "10.9.0.0/29"})  # .2-.6 usable (.1 is the gateway)
DUAL = parse_range_sets({"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd09::/120"}]]})


def alloc(store, h: Handle, sets=SMALL, req=()):  # type: ignore[no-untyped-def]
    with store.session() as s:
        return allocator.allocate(s, sets, h, req)


def test_first_address_skips_gateway_and_is_round_robin(store):
    a = alloc(store, Handle("c1", "eth0"))[0]
    assert str(a.address) == "10.9.0.2/29" and str(a.gateway) == "10.9.0.1"
    with store.session() as s:
        allocator.release(s, Handle("c1", "eth0"))
    assert str(alloc(store, Handle("c2", "eth0"))[0].address.ip) == "10.9.0.3"


def test_repeated_add_returns_same_address(store):
    first = alloc(store, Handle("c1", "eth0"))
    assert alloc(store, Handle("c1", "eth0")) == first
    assert alloc(store, Handle("c1", "net1")) != first


def test_exhaustion_names_the_range_and_leaves_nothing(store):
    for i in range(5):
        alloc(store, Handle(f"c{i}", "eth0"))
    with pytest.raises(RangeExhausted, match=r"10\.9\.0\.1-10\.9\.0\.6"):
        alloc(store, Handle("c9", "eth0"))
    with store.session() as s:
        assert len(s.holders()) == 5


def test_requested_address_and_conflicts(store):
    assert str(alloc(store, Handle("c1", "eth0"), req=[ip("10.9.0.5")])[0].address.ip) == "10.9.0.5"
    with pytest.raises(AddressUnavailable):
        alloc(store, Handle("c2", "eth0"), req=[ip("10.9.0.5")])
    with pytest.raises(AddressUnavailable):
        alloc(store, Handle("c3", "eth0"), req=[ip("10.99.0.5")])
    with store.session() as s:
        assert list(s.holders()) == [ip("10.9.0.5")]


def test_dual_stack_is_all_or_nothing(store):
    got = alloc(store, Handle("c1", "eth0"), sets=DUAL)
    assert [a.address.version for a in got] == [4, 6]
    with pytest.raises(AddressUnavailable):
        alloc(store, Handle("c2", "eth0"), sets=DUAL, req=[ip("fd09::2")])  # v6 taken by c1
    with store.session() as s:
        assert sorted(map(str, s.holders())) == ["10.9.0.2", "fd09::2"]


def test_gc_keeps_valid_releases_rest(store):
    for c in ("a", "b", "c"):
        alloc(store, Handle(c, "eth0"))
    with store.session() as s:
        gone = allocator.gc(s, {Handle("b", "eth0")})
        assert sorted(h.container_id for _, h in gone) == ["a", "c"]
        assert [h.container_id for h in s.holders().values()] == ["b"]


def test_concurrent_sessions_never_duplicate(store):
    sets = parse_range_sets({"subnet": "10.10.0.0/24"})

    def one(i: int) -> str:
        return str(alloc(store, Handle(f"c{i}", "eth0"), sets=sets)[0].address.ip)

    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(one, range(200)))
    assert len(set(got)) == 200


def test_file_store_layout_is_host_local(tmp_path: Path):
    st = FileStore(str(tmp_path), "net1")
    alloc(st, Handle("cid1", "eth0"))
    d = tmp_path / "net1"
    assert (d / "10.9.0.2").read_bytes() == b"cid1\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == "10.9.0.2"
    assert (d / "lock").exists()
    assert oct(os.stat(d / "10.9.0.2").st_mode & 0o777) == "0o600"


def test_file_store_sees_files_it_did_not_write(tmp_path: Path):
    """Reservations made by another writer (the Go plugin) are honoured, id-only ones too."""
    st = FileStore(str(tmp_path), "net1")
    alloc(st, Handle("mine", "eth0"))
    d = tmp_path / "net1"
    (d / "10.9.0.3").write_bytes(b"go-cid\r\neth0")
    (d / "10.9.0.4").write_bytes(b"legacy-cid")
    assert str(alloc(st, Handle("next", "eth0"))[0].address.ip) == "10.9.0.5"
    with st.session() as s:
        assert s.release(Handle("go-cid", "eth0")) == [ip("10.9.0.3")]
        assert s.release(Handle("legacy-cid", "eth1")) == [ip("10.9.0.4")]
    assert not (d / "10.9.0.3").exists() and not (d / "10.9.0.4").exists()


def test_file_store_sees_a_foreign_writer_replace_a_lease(tmp_path: Path):
    """The Go plugin freed a lease and gave the address to another container: the warm
    index must not keep the old owner (a DEL of the old pod would free the new pod's IP)."""
    st = FileStore(str(tmp_path), "net1")
    alloc(st, Handle("old", "eth0"))
    d = tmp_path / "net1"
    (d / "10.9.0.2").unlink()
    (d / "10.9.0.2").write_bytes(b"new\r\neth0")
    with st.session() as s:
        assert s.release(Handle("old", "eth0")) == []
        assert s.get(Handle("new", "eth0")) == [ip("10.9.0.2")]


def test_file_store_cold_process_replays_the_journal(tmp_path: Path):
    from podnet.ipam import filestore
    st = FileStore(str(tmp_path), "net1")
    for i in range(5):
        alloc(st, Handle(f"c{i}", "eth0"))
    with st.session() as s:
        s.release(Handle("c1", "eth0"))
    filestore._cache.clear()  # as a fresh launcher process would start
    with st.session() as s:
        assert s.get(Handle("c3", "eth0")) == [ip("10.9.0.5")]
        assert s.get(Handle("c1", "eth0")) == []
        assert len(s.holders()) == 4
