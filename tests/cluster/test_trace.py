"""`podnet trace` on the virtual cluster (host-gw and vxlan): a working path across nodes is named
hop by hop (exit 0); each fault the test injects is named at its hop (exit 1); a node whose agent
is down ends the trace with what could still be seen; the trace changes no state.

Faults that the agent itself repairs at once (a route, neighbour or FDB entry it owns: it watches
for their deletion) cannot be held in place on a live cluster; tests/kernel/test_trace_hops.py
injects those into a node namespace and runs the same hop code."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from podnet.lab import ETCD_ADDR, Cluster, Pod
from tests.helpers.etcd import have_etcd

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")


@pytest.fixture(params=["host-gw", "vxlan"])
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, Pod, Pod, Pod]]:
    c = Cluster(3, request.param, lease_ttl=3)
    try:
        c.up()
        a, b, same = c.add_pod(0), c.add_pod(1), c.add_pod(0)
        c.wait_converged()
        yield c, a, b, same
    finally:
        c.down()


def trace(c: Cluster, *argv: str) -> tuple[int, str]:
    p = subprocess.run(["ip", "netns", "exec", c.fab, sys.executable, "-m", "podnet.cli", "trace", "--etcd",
                        c.etcd_url, *argv], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def state(c: Cluster, pods: list[Pod]) -> list[str]:
    """Everything a trace could touch: each node's and pod's routes, neighbours, FDB, nft ruleset
    (IPv4: the lab is IPv4-only, and IPv6 link-local addresses finish their DAD on their own)."""
    out = []
    for ns in [*(c.nodes[i] for i in c.live), *(p.name for p in pods)]:
        for cmd in (["ip", "-4", "-n", ns, "route", "show", "table", "all"],
                    ["ip", "-n", ns, "neigh", "show", "nud", "permanent"],
                    ["bridge", "-n", ns, "fdb", "show"], ["ip", "-4", "-n", ns, "addr"],
                    ["ip", "netns", "exec", ns, "nft", "list", "ruleset"]):
            out.append(subprocess.run(cmd, capture_output=True, text=True).stdout)
    return out


def test_working_paths_are_named_hop_by_hop_and_nothing_changes(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, b, same = lab
    before = state(c, [a, b, same])
    rc, out = trace(c, a.name, b.name, "--port", "8080")
    assert rc == 0, out
    assert f"pod {a.ip} eth0" in out and "→ veth" in out and "(node n1)" in out, out
    assert ("(vxlan, VTEP" in out) if c.backend == "vxlan" else ("(host-gw)" in out), out
    assert "node n2 (10.97.0.2) receives it" in out and f"→ pod {b.ip} eth0" in out and out.rstrip().endswith("path works")
    rc, out = trace(c, a.name, same.name)                                  # same node: no fabric
    assert rc == 0 and "n2" not in out and f"→ pod {same.ip} eth0" in out, out
    rc, out = trace(c, a.ip, ETCD_ADDR)                                   # leaving the cluster
    assert rc == 0 and "masqueraded as node n1" in out, out
    rc, out = trace(c, "node:n3", b.ip)                                  # from a node itself
    assert rc == 0 and f"→ pod {b.ip} eth0" in out, out
    rc, out = trace(c, "--json", a.name, b.name)
    assert rc == 0 and '"ok": true' in out
    assert state(c, [a, b, same]) == before, "the trace changed network state"


def test_each_fault_is_named_at_its_hop(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, b, same = lab
    # the remote pod's host route (the CNI plugin's; the agent does not own it) gone on n2
    subprocess.run(["ip", "-n", c.nodes[1], "route", "del", b.ip], check=True)
    rc, out = trace(c, a.name, b.name)
    assert rc == 1 and f"✗ broken at node n2: node n2 has no route to its pod {b.ip}" in out, out
    assert "check: the pod's host route" in out
    # the source pod's own routes gone
    subprocess.run(["ip", "-4", "-n", same.name, "route", "flush", "table", "main"], check=True)
    rc, out = trace(c, same.name, b.name)
    assert rc == 1 and f"✗ broken at node n1: pod {same.ip}" in out and "has no route to" in out, out
    # the node's masquerade table gone: pod traffic to outside the cluster
    subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "delete", "table", "inet", "podnet_node_masq"], check=True)
    rc, out = trace(c, a.name, ETCD_ADDR)
    assert rc == 1 and "no masquerade for pod traffic leaving the cluster" in out, out


def test_a_node_whose_agent_is_down_ends_the_trace_there(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, b, _ = lab
    c.kill_agent(1)
    rc, out = trace(c, a.name, b.name)          # n1 still routes to n2 until n2's lease expires (3 s)
    assert rc == 1 and "could not ask node n2" in out and f"pod {a.ip} eth0" in out, out
    assert "check: is podnet's agent on n2 running?" in out


def test_a_remote_node_missing_from_the_routes_is_named_on_the_sending_node(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, b, _ = lab
    c.kill_agent(1)
    c.podnet("node", "rm", "n2")                # n1 drops its routes to n2's block at once
    deadline = time.monotonic() + 10
    while "10.97.0.2" in c.podnet_routes(0).values():
        assert time.monotonic() < deadline, "n1 kept its routes to the removed node"
        time.sleep(0.05)
    rc, out = trace(c, a.name, b.ip)
    assert rc == 1 and f"✗ broken at node n1: node n1 has no route to {b.ip}" in out, out


def test_unknown_ends_exit_2(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, _, _ = lab
    rc, out = trace(c, a.name, "no-such-pod")
    assert rc == 2 and "no-such-pod: not an address" in out, out


def test_a_host_port_is_followed_through_its_dnat_and_a_missing_mapping_is_named(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, _, _ = lab
    web = c.add_pod(1, host_ports=(("tcp", 30080, 80),))
    rc, out = trace(c, a.name, "node:n2", "--port", "30080", "--hostport")
    assert rc == 0, out
    assert f"hostPort tcp/30080 on node n2 → DNAT to {web.ip}:80" in out and f"→ pod {web.ip} eth0" in out, out
    rc, out = trace(c, a.name, "node:n2", "--port", "30081", "--hostport")      # nobody asked for 30081
    assert rc == 1 and "✗ broken at node n2: node n2 (10.97.0.2): no hostPort mapping for tcp/30081" in out, out
    c.del_pod(web)                                                                  # its mapping goes with it
    rc, out = trace(c, a.name, "node:n2", "--port", "30080", "--hostport")
    assert rc == 1 and "no hostPort mapping for tcp/30080" in out, out


def test_probe_follows_a_real_packet_through_the_nodes_nftables(lab) -> None:  # type: ignore[no-untyped-def]
    c, a, b, _ = lab
    from podnet.net import netns
    with netns.opened(b.netns) as fd, netns.entered(fd):
        import socket
        srv = socket.socket()
        srv.bind(("0.0.0.0", 8080))
        srv.listen(64)

    def on_n1(*argv: str) -> tuple[int, str]:     # --probe runs on the source's node
        p = subprocess.run(["ip", "netns", "exec", c.nodes[0], sys.executable, "-m", "podnet.cli", "trace", "--etcd",
                            c.etcd_url, *argv], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def tables() -> str:
        return subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "list", "tables"], capture_output=True,
                              text=True).stdout
    try:
        before = tables()
        rc, out = on_n1(a.name, b.name, "--port", "8080", "--probe")
        assert rc == 0, out
        assert f"probe from pod {a.name}: tcp {b.ip}:8080 — answered" in out, out
        assert "inet podnet_node_masq postrouting: policy accept" in out, out    # the chain it met on n1
        subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "-f", "-"], check=True, text=True, input=(
            "add table inet pntest\nadd chain inet pntest pnfwd { type filter hook forward priority 0; }\n"
            "add rule inet pntest pnfwd tcp dport 8080 drop\n"))
        rc, out = on_n1(a.name, b.name, "--port", "8080", "--probe")
        assert rc == 1 and "no answer" in out, out
        assert "probe dropped on this node by inet pntest chain pnfwd: rule tcp dport 8080 drop (verdict drop)" in out, out
        subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "delete", "table", "inet", "pntest"], check=True)
        assert tables() == before, "the probe's tracing table was left behind"
    finally:
        srv.close()
