"""The cluster IPAM's contract: allocation rules, node registry, watches — every test takes a `kv`
fixture, so the same suite runs over the in-memory model (tests/unit/test_cluster_ipam.py) and
over real etcd (tests/cluster/test_cluster_contract_etcd.py)."""
from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from podnet.ipam.cluster import Block, ClusterIpam, Pool
from podnet.ipam.errors import RangeExhausted
from podnet.ipam.registry import NodeRegistry


def pool(cidr: str = "10.70.0.0/24", block: int = 28, gw: str | None = "10.70.0.1") -> Pool:
    return Pool("p", ipaddress.ip_network(cidr), block, ipaddress.ip_address(gw) if gw else None)


def ipam(kv: Any, node: str, cooldown: float = 0, prefix: str = "/podnet/") -> ClusterIpam:
    c = ClusterIpam(kv, node, prefix=prefix, cooldown=cooldown)
    return c


def registry(c: ClusterIpam) -> NodeRegistry:
    return NodeRegistry(c)


def test_allocation_skips_network_and_gateway_and_is_idempotent(kv: Any) -> None:
    a = ipam(kv, "n1")
    p = a.ensure_pool(pool())
    ip = a.allocate("net/c1/eth0", [p])
    assert ip == [ipaddress.ip_address("10.70.0.2")]
    before = kv.writes
    assert a.allocate("net/c1/eth0", [p]) == ip            # a repeated ADD
    assert kv.writes == before, "a repeated ADD must not write"
    assert a.allocate("net/c1/eth1", [p]) != ip            # another interface of the same pod


def test_one_write_transaction_per_allocation_and_release(kv: Any) -> None:
    a = ipam(kv, "n1")
    p = a.ensure_pool(pool())
    a.allocate("net/c0/eth0", [p])     # the first claims the block
    before = kv.txns
    a.allocate("net/c1/eth0", [p])
    assert kv.txns - before == 1, "the common case is exactly one transaction"
    before = kv.txns
    a.release("net/c1/eth0")
    assert kv.txns - before == 1


def test_nodes_get_their_own_blocks_then_claim_then_borrow_then_exhaust(kv: Any) -> None:
    p = pool("10.70.0.0/27", block=28, gw=None)             # two blocks of 16
    n1, n2 = ipam(kv, "n1"), ipam(kv, "n2")
    n1.ensure_pool(p)
    a = n1.allocate("net/a/eth0", [p])[0]
    b = n2.allocate("net/b/eth0", [p])[0]
    blocks = {blk.cidr: blk.node for blk, _ in n1.blocks("p")}
    assert blocks == {ipaddress.ip_network("10.70.0.0/28"): "n1", ipaddress.ip_network("10.70.0.16/28"): "n2"}
    assert a in ipaddress.ip_network("10.70.0.0/28") and b in ipaddress.ip_network("10.70.0.16/28")
    got = {a, b}
    for i in range(40):
        try:
            got.add(n1.allocate(f"net/x{i}/eth0", [p])[0])
        except RangeExhausted as e:
            assert "exhausted" in str(e)
            break
    else:
        pytest.fail("never exhausted")
    # n1 borrowed from n2's block once its own was full; every usable address went out once
    assert len(got) == 30   # 32 addresses minus network and broadcast


def test_release_cooldown_then_reuse(kv: Any) -> None:
    a = ipam(kv, "n1", cooldown=3600)
    p = a.ensure_pool(pool())
    ip = a.allocate("net/c1/eth0", [p])[0]
    assert a.release("net/c1/eth0") == [ip]
    assert a.release("net/c1/eth0") == []                  # DEL of an unknown handle succeeds
    assert a.allocate("net/c2/eth0", [p])[0] != ip         # resting
    b = ipam(kv, "n1", cooldown=0, prefix="/second/")
    b.ensure_pool(pool())
    ip2 = b.allocate("net/c1/eth0", [p])[0]
    b.release("net/c1/eth0")
    assert b.allocate("net/c3/eth0", [p])[0] == ip2        # no cooldown: reused at once


def test_dual_stack_one_address_per_family(kv: Any) -> None:
    a = ipam(kv, "n1")
    p4 = a.ensure_pool(pool())
    p6 = a.ensure_pool(Pool("p6", ipaddress.ip_network("fd70::/64"), 122))
    ips = a.allocate("net/c1/eth0", [p4, p6])
    assert [i.version for i in ips] == [4, 6]
    assert a.release("net/c1/eth0") == ips
    assert a.check() == []


def test_concurrent_allocators_on_three_nodes_never_duplicate(kv: Any) -> None:
    p = ipam(kv, "n0").ensure_pool(pool("10.71.0.0/22", block=26, gw=None))
    nodes = [ipam(kv, f"n{i}") for i in range(3)]

    def work(k: int) -> list[str]:
        node = nodes[k % 3]
        return [str(node.allocate(f"net/c{k}-{j}/eth0", [p])[0]) for j in range(20)]
    with ThreadPoolExecutor(12) as ex:
        got = [ip for chunk in ex.map(work, range(24)) for ip in chunk]
    assert len(got) == len(set(got)) == 480
    assert nodes[0].check() == []
    for hid in list(nodes[0].handles()):
        nodes[0].release(hid)
    assert all(not blk.allocations for blk, _ in nodes[0].blocks("p"))


def test_gc_releases_only_this_nodes_invalid_handles(kv: Any) -> None:
    n1, n2 = ipam(kv, "n1"), ipam(kv, "n2")
    p = n1.ensure_pool(pool())
    n1.allocate("net/keep/eth0", [p])
    n1.allocate("net/gone/eth0", [p])
    n2.allocate("net/other/eth0", [p])
    assert n1.gc("net", {("keep", "eth0")}) == ["net/gone/eth0"]
    assert set(n1.handles("net")) == {"net/keep/eth0", "net/other/eth0"}


def test_check_reports_a_leak_and_a_double_owner(kv: Any) -> None:
    a = ipam(kv, "n1")
    p = a.ensure_pool(pool())
    a.allocate("net/c1/eth0", [p])
    key = a.block_key("p", ipaddress.ip_network("10.70.0.0/28"))
    blk = Block.from_bytes(kv.get(key).value)
    blk.allocations["10.70.0.9"] = "net/ghost/eth0"
    from podnet.ipam.cluster import Txn
    assert kv.txn(Txn(((key, kv.get(key).mod_revision),), ((key, blk.to_bytes()),)))
    problems = a.check()
    assert any("ghost" in x and "leak" in x for x in problems)


def test_pool_cidr_mismatch_is_an_error(kv: Any) -> None:
    a = ipam(kv, "n1")
    a.ensure_pool(pool())
    with pytest.raises(Exception, match="exists with CIDR"):
        a.ensure_pool(pool("10.99.0.0/24"))


def test_dead_node_is_reclaimed_after_the_second_look(kv: Any) -> None:
    n1, n2 = ipam(kv, "n1", cooldown=3600), ipam(kv, "n2", cooldown=3600)
    r1, r2 = registry(n1), registry(n2)
    p = n1.ensure_pool(pool("10.72.0.0/27", block=28, gw=None))     # two blocks of 16
    lease1 = r1.register(ttl=5)
    r2.register(ttl=5)
    lost = [n1.allocate(f"net/a{i}/eth0", [p])[0] for i in range(3)]
    kept = n2.allocate("net/b/eth0", [p])[0]
    assert r2.reclaim(grace=0) == {}, "nobody is dead yet"
    kv.expire_lease(lease1)
    assert r2.dead_nodes() == {"n1"}
    assert any("dead node n1" in p for p in r2.stale_blocks()), "check must report a dead node's block"
    assert r2.reclaim(grace=0) == {}, "the first sight only marks the node dead"
    released = r2.reclaim(grace=0)
    assert sorted(released["n1"]) == ["net/a0/eth0", "net/a1/eth0", "net/a2/eth0"]
    assert set(n2.handles()) == {"net/b/eth0"} and n2.get("net/b/eth0") == [kept]
    assert {str(b.cidr): b.node for b, _ in n2.blocks("p")} == {"10.72.0.0/28": "", "10.72.0.16/28": "n2"}
    assert r2.dead_nodes() == set()
    # n2 fills its block, then claims the reclaimed one; the lost addresses rest first
    more = [n2.allocate(f"net/m{i}/eth0", [p])[0] for i in range(20)]
    assert not set(lost) & set(more), "addresses lost with the dead node were reused before their cooldown"
    assert {b.node for b, _ in n2.blocks("p")} == {"n2"}
    # n1 comes back with a stale view: it must not take anything it lost or anyone holds
    with pytest.raises(RangeExhausted):
        for i in range(20):
            n1.allocate(f"net/back{i}/eth0", [p])
    assert n1.check() == []


def test_node_subnets_are_distinct_kept_on_restart_never_lent_and_run_out(kv: Any) -> None:
    """host-local mode: each node leases one whole block (flannel style)."""
    p = pool("10.73.0.0/26", block=28, gw=None)                       # four subnets of 16
    n1, n2 = ipam(kv, "n1"), ipam(kv, "n2")
    s1, s2 = n1.claim_subnet(p), n2.claim_subnet(p)
    assert s1 != s2 and s1.prefixlen == s2.prefixlen == 28
    assert ipam(kv, "n1").claim_subnet(p) == s1, "a restarted agent must get its subnet back"
    other = ipam(kv, "n3")                                             # a cluster-IPAM allocator in the pool
    got = [other.allocate(f"net/c{i}/eth0", [p])[0] for i in range(30)]
    assert not any(ip in s1 or ip in s2 for ip in got), "addresses were lent out of a node subnet"
    assert {str(b.cidr) for b, _ in n1.blocks("p") if b.whole} == {str(s1), str(s2)}
    with pytest.raises(RangeExhausted):
        ipam(kv, "n4").claim_subnet(p)
    assert n1.check() == []


def test_removing_a_node_drops_its_registration_at_once(kv: Any) -> None:
    r1, r2 = registry(ipam(kv, "n1")), registry(ipam(kv, "n2"))
    r1.register(ttl=30)
    r2.register(ttl=30)
    assert r2.live_nodes() == {"n1", "n2"}
    assert r2.remove_node("n1") is True
    assert r2.live_nodes() == {"n2"} and r2.dead_nodes() == {"n1"}
    assert r2.remove_node("n1") is False


def test_a_watch_reports_changes_under_its_prefix_only(kv: Any) -> None:
    seen: list[tuple[str, bytes | None]] = []
    fired, established = threading.Event(), threading.Event()

    def on_event(key: str, value: bytes | None) -> None:
        if not key:                                                     # "" = (re)connected: resync
            established.set()
            return
        seen.append((key, value))
        fired.set()
    cancel = kv.watch_prefix("/podnet/nodes/", on_event)
    try:
        if hasattr(kv, "kv") or type(kv).__name__ == "EtcdKV":
            assert established.wait(10), "the etcd watch was never established"
        ipam(kv, "n1").ensure_pool(pool())                              # not under the prefix
        lease = registry(ipam(kv, "n1")).register(ttl=30)               # under it: events arrive in order
        assert fired.wait(5), "registering a node was not reported"
        assert seen[0][0] == "/podnet/nodes/n1" and b'"node": "n1"' in (seen[0][1] or b""), \
            f"a change outside the prefix was reported first: {seen[0][0]}"
        fired.clear()
        kv.expire_lease(lease)
        assert fired.wait(5) and seen[-1] == ("/podnet/nodes/n1", None), "a lease expiry was not reported"
    finally:
        cancel()


def test_a_repeated_add_gets_its_address_even_when_the_pool_is_full(kv: Any) -> None:
    """A kubelet retry on a busy cluster: the handle already holds an address, so no free address
    is needed — from the same node, from another node, and while a freed address still rests."""
    n1, n2 = ipam(kv, "n1", cooldown=3600), ipam(kv, "n2", cooldown=3600)
    p = n1.ensure_pool(Pool("p", ipaddress.ip_network("10.81.0.0/28"), 29))     # 14 usable, two blocks
    held = {f"net/c{i}/eth0": n1.allocate(f"net/c{i}/eth0", [p]) for i in range(1, 15)}
    with pytest.raises(RangeExhausted):
        n1.allocate("net/new/eth0", [p])
    assert n1.allocate("net/c1/eth0", [p]) == held["net/c1/eth0"]
    assert n2.allocate("net/c2/eth0", [p]) == held["net/c2/eth0"], "from another node"
    n2.release("net/c14/eth0")                                                  # rests (cooldown)
    assert ipam(kv, "n3", cooldown=3600).allocate("net/c3/eth0", [p]) == held["net/c3/eth0"]
    assert n1.check() == []
