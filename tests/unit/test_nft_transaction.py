"""nft.one_transaction(): writes held and run as one script at the block's end; an error drops
them; reads and run_ignoring_missing are not held; nesting joins the outer block."""
from __future__ import annotations

import pytest

from podnet.net import nft


@pytest.fixture
def executed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []

    def fake(script: str, json_output: bool) -> str:
        calls.append((script, json_output))
        return '{"nftables": []}' if json_output else ""
    monkeypatch.setattr(nft, "_execute", fake)
    return calls


def test_writes_in_the_block_run_once_at_its_end_in_order(executed: list[tuple[str, bool]]) -> None:
    with nft.one_transaction():
        nft.run("add table inet a")
        with nft.one_transaction():
            nft.run("add table inet b\n")
        assert executed == []
        nft.list_json("table inet a")                 # a read goes through at once
        nft.run_ignoring_missing("delete element inet a s { 1 }\n")
    assert executed == [("list table inet a", True), ("delete element inet a s { 1 }\n", False),
                        ("add table inet a\nadd table inet b\n", False)]


def test_an_error_in_the_block_drops_the_held_writes(executed: list[tuple[str, bool]]) -> None:
    with pytest.raises(RuntimeError), nft.one_transaction():
        nft.run("add table inet a")
        raise RuntimeError("a step failed")
    assert executed == []
    nft.run("add table inet c")                       # outside a block: at once
    assert executed == [("add table inet c", False)]


def test_after_commit_runs_once_the_writes_are_in_and_never_after_a_failure(executed: list[tuple[str, bool]]) -> None:
    done: list[str] = []
    with nft.one_transaction():
        nft.run("add table inet a")
        nft.after_commit(lambda: done.append("recorded"))
        assert done == []                             # not before the transaction is committed
    assert done == ["recorded"] and executed == [("add table inet a\n", False)]
    with pytest.raises(RuntimeError), nft.one_transaction():
        nft.after_commit(lambda: done.append("never"))
        raise RuntimeError("a step failed")
    nft.after_commit(lambda: done.append("outside a block: at once"))
    assert done == ["recorded", "outside a block: at once"]


def test_a_failed_commit_skips_after_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(script: str, json_output: bool) -> str:
        raise nft.NftError("Error: Could not process rule: File exists")
    monkeypatch.setattr(nft, "_execute", failing)
    done: list[str] = []
    with pytest.raises(nft.NftError), nft.one_transaction():
        nft.run("create element inet a m { 1 }")
        nft.after_commit(lambda: done.append("recorded"))
    assert done == []
