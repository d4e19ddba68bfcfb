"""A pod's DEL deletes the hostPort elements its ADD recorded (net/nft_records.py) — and only
elements that carry its comment: a stale or forged record never deletes another pod's element,
and a record that does not check out falls back to listing the table.  In a scratch netns."""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.net import netns, nft, nft_records
from podnet.net import portmap_nft as pm
from tests.helpers.cni import netns_add, netns_del, nsexec, unique

NET = ipaddress.ip_network("10.91.0.0/24")


def mapping(port: int, pod: str, host_ip: str | None = None) -> pm.Mapping:
    return pm.Mapping(port, 80, "tcp", ipaddress.ip_address(host_ip) if host_ip else None,
                      ipaddress.ip_address(pod), NET)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(nft_records, "RECORD_DIR", str(tmp_path / "records"))
    name = unique("pnt-rec-")
    netns_add(name)
    try:
        with netns.opened(f"/run/netns/{name}") as fd, netns.entered(fd):
            yield name               # (nft gives each netns a libnftables context of its own)
    finally:
        netns_del(name)


def owners(name: str) -> list[str]:
    """The comment of every element of the portmap table."""
    text = nsexec(name, "nft", "list", "table", "inet", "podnet_portmap").stdout
    return [part.split('"')[1] for part in text.split("comment ")[1:]]


def test_del_deletes_what_add_recorded_and_the_record(scratch: str) -> None:
    pm.add("recnet", "c1", [mapping(30100, "10.91.0.5"), mapping(30101, "10.91.0.5", "192.0.2.1")], True, True)
    pm.add("recnet", "c2", [mapping(30102, "10.91.0.6")], True, False)
    record = nft_records.path(pm.TABLE, "recnet", "c1")
    assert os.path.exists(record)
    assert sorted(nft_records.recalled(pm.TABLE, "recnet", "c1") or []) == sorted([
        ("any4", "tcp . 30100"), ("bound4", "192.0.2.1 . tcp . 30101"), ("hairpin4", "10.91.0.5 . 10.91.0.0/24"),
        ("localhost4", "10.91.0.5"), ("masqall4", "10.91.0.5")])
    assert pm.remove("recnet", "c1") == 5
    assert not os.path.exists(record)
    assert owners(scratch) == ["recnet c2"] * 3           # the other pod's three elements are untouched
    assert pm.remove("recnet", "c1") == 0                 # DEL again: nothing, no error


def test_a_forged_record_never_deletes_another_pods_element(scratch: str) -> None:
    pm.add("recnet", "victim", [mapping(30110, "10.91.0.7")], False, False)
    nft_records.remember(pm.TABLE, "recnet", "intruder", [("any4", "tcp . 30110")])
    assert nft_records.recalled(pm.TABLE, "recnet", "intruder") is None   # the element is not its
    assert pm.remove("recnet", "intruder") == 0
    assert owners(scratch) == ["recnet victim"]


def test_a_record_that_does_not_check_out_falls_back_to_the_listing(scratch: str) -> None:
    pm.add("recnet", "c3", [mapping(30120, "10.91.0.8")], True, False)
    nft_records.remember(pm.TABLE, "recnet", "c3", [("any4", "tcp . 30999")])   # gone / never there
    assert nft_records.recalled(pm.TABLE, "recnet", "c3") is None
    assert pm.remove("recnet", "c3") == 3                 # all three found by the listing
    assert owners(scratch) == []


def test_a_failed_add_leaves_no_record(scratch: str) -> None:
    pm.add("recnet", "first", [mapping(30130, "10.91.0.9")], False, False)
    with pytest.raises(nft.NftError), nft.one_transaction():
        pm.add("recnet", "second", [mapping(30130, "10.91.0.10")], False, False)   # the port is taken
    assert not os.path.exists(nft_records.path(pm.TABLE, "recnet", "second"))
    assert owners(scratch) == ["recnet first"]


def test_gc_drops_the_records_of_containers_it_removes(scratch: str) -> None:
    pm.add("recnet", "live", [mapping(30140, "10.91.0.11")], False, False)
    pm.add("recnet", "dead", [mapping(30141, "10.91.0.12")], False, False)
    assert pm.remove_stale("recnet", {"live"}) == 1
    assert os.path.exists(nft_records.path(pm.TABLE, "recnet", "live"))
    assert not os.path.exists(nft_records.path(pm.TABLE, "recnet", "dead"))
