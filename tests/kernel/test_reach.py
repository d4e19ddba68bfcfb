"""lab.reach: many pairs at once, ICMP and TCP, right in both directions — including with every
descriptor above 1024, where the sequential prober it replaced (select()) broke the 1000-pod demo."""
from __future__ import annotations

import os
import resource
import socket
import subprocess

from podnet.lab import reach
from podnet.net import netns, probe


def _ip(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", ns, *argv], check=True)


def _wire(make_pod) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Two pods joined by a veth: a (10.79.0.1/16), b (10.79.0.2/16 and 10.79.1.1–200/16)."""
    a, b = make_pod(), make_pod()
    na, nb = os.path.basename(a), os.path.basename(b)
    _ip(na, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nb)
    _ip(na, "addr", "add", "10.79.0.1/16", "dev", "eth0")
    _ip(nb, "addr", "add", "10.79.0.2/16", "dev", "eth0")
    batch = "".join(f"addr add 10.79.1.{i}/16 dev eth0\n" for i in range(1, 201))
    subprocess.run(["ip", "-n", nb, "-batch", "-"], input=batch, text=True, check=True)
    for ns in (na, nb):
        _ip(ns, "link", "set", "lo", "up")
        _ip(ns, "link", "set", "eth0", "up")
    return a, b


def _listen(path: str, port: int) -> socket.socket:
    with netns.opened(path) as fd, netns.entered(fd):
        s = socket.socket()
        s.bind(("0.0.0.0", port))
        s.listen(4096)
    return s


def test_verdicts_open_closed_and_absent(make_pod) -> None:  # type: ignore[no-untyped-def]
    a, b = _wire(make_pod)
    srv = _listen(b, 8080)
    try:
        got = reach.check([(a, "10.79.0.2"), (a, "10.79.0.9")], port=8080, timeout=1.0, retry_timeout=1.0)
        assert got[(a, "10.79.0.2")] == reach.Verdict(icmp=True, tcp=True)
        assert got[(a, "10.79.0.9")] == reach.Verdict(icmp=False, tcp=False)    # nobody has it
        closed = reach.check([(a, "10.79.0.2")], port=8081, timeout=1.0, retry_timeout=1.0)
        assert closed[(a, "10.79.0.2")] == reach.Verdict(icmp=True, tcp=False)  # refused
        back = reach.check([(b, "10.79.0.1")], port=None)
        assert back[(b, "10.79.0.1")].icmp
    finally:
        srv.close()


def test_hundreds_of_pairs_with_descriptors_past_1024(make_pod) -> None:  # type: ignore[no-untyped-def]
    a, b = _wire(make_pod)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        import pytest
        pytest.skip(f"the hard descriptor limit is {hard}: cannot hold 1100 descriptors and probe")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]   # every new fd is > 1024
    srv = _listen(b, 8080)
    try:
        dsts = [f"10.79.1.{i}" for i in range(1, 201)]
        got = reach.check([(a, d) for d in dsts] + [(a, "10.79.2.1")], port=8080, chunk=64)
        assert all(got[(a, d)] == reach.Verdict(True, True) for d in dsts), \
            [d for d in dsts if got[(a, d)] != reach.Verdict(True, True)]
        assert got[(a, "10.79.2.1")] == reach.Verdict(False, False)
        assert probe.ping(a, "10.79.0.2")           # the one-off ping (poll, not select) too
    finally:
        srv.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_plan_small_is_every_pair_large_is_representatives_nodes_and_a_seeded_sample() -> None:
    small = reach.plan([0, 0, 1, 1], nodes=2)
    assert len(small.pairs) == 12 and len(small.node_pairs) == 2
    nodes = [n for n in range(20) for _ in range(50)]
    big = reach.plan(nodes, nodes=20, sample=2000, seed=7)
    firsts = {n * 50 for n in range(20)}
    reps = {s for s, _ in big.pairs[:20 * 999]}
    assert reps == firsts                                           # the first pod of every node …
    assert all(sum(1 for s, d in big.pairs[:20 * 999] if d == t) >= 19 for t in range(1000))  # … reaches every pod
    assert len(big.pairs) == 20 * 999 + 2000 and len(set(big.pairs)) == len(big.pairs)
    assert len(big.node_pairs) == 380
    assert reach.plan(nodes, nodes=20, seed=7).pairs == big.pairs   # seeded: the same sample again
