"""`podnet agent --datastore kubernetes` on the virtual cluster against a REAL control plane:
kube-apiserver, kube-controller-manager and kube-scheduler built from source (scripts/k8s-build.sh),
run by the lab in its fabric namespace over its etcd.  Nodes register as kubelets do; podCIDRs come
from the controller manager (--allocate-node-cidrs), never from podnet or the test; the agents hold
podnet's ServiceAccount token, so a right missing from deploy/podnet.yaml fails these tests.

Also the watch's faults: the API server killed and restarted, etcd compacted behind a watch (410
Gone → relist), a right taken away and given back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.lab import FABRIC_NET, Cluster
from podnet.net import probe
from tests.helpers.kubernetes import needs_kubernetes
from tests.helpers.traffic import fetch, server

pytestmark = needs_kubernetes


def wait_for(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.02)
    return time.monotonic() - t0


def health(c: Cluster, j: int, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", c.nodes[j], sys.executable, "-m", "podnet.cli", *flags,
                           "--socket", c.sock(j)], capture_output=True, text=True)


@pytest.fixture(params=["vxlan", "host-gw"])
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(3, request.param, datastore="kubernetes")
    try:
        c.up()
        yield c
    finally:
        c.down()


def test_nodes_from_the_api_reach_each_other_and_a_deleted_node_loses_its_routes(kube_cluster: Cluster) -> None:
    c = kube_cluster
    for i in range(3):
        cidrs, writer = c.kube.pod_cidrs(f"n{i + 1}")
        assert writer == "kube-controller-manager" and len(cidrs) == 1, (cidrs, writer)
        ipam = c.conflist(i)["plugins"][0]["ipam"]
        assert ipam["type"] == "podnet-host-local" and ipam["ranges"] == [[{"subnet": cidrs[0]}]], ipam
        ann = c.kube.annotations(f"n{i + 1}")
        assert ann["podnet.io/backend"] == c.backend and ann["podnet.io/underlay-addr"] == f"{FABRIC_NET}.{i + 1}"
        assert ("podnet.io/vtep-mac" in ann) == (c.backend == "vxlan")
    wait_for(lambda: c.kube.event_nodes("PodnetReady") == {"n1", "n2", "n3"}, 10,
             "every node records its readiness as an Event")
    for i in range(3):
        for _ in range(2):
            c.add_pod(i)
    c.wait_converged(10)
    for src in c.pods:
        for dst in c.pods:
            if src.node != dst.node:
                assert probe.ping(src.netns, dst.ip), f"{src.ip} (n{src.node + 1}) cannot reach {dst.ip}"
    a, b = c.pods[0], c.pods[2]
    with server(b.name, "tcp", 8080, "podB"):
        assert fetch(a.name, "tcp", b.ip, 8080) == f"podB {a.ip}", "source address not kept across nodes"

    c.kill_agent(2)
    t0 = time.monotonic()
    c.kube.delete_node("n3")                             # kubectl delete node n3
    wait_for(lambda: all(f"{FABRIC_NET}.3" not in c.podnet_routes(i).values() for i in (0, 1)), 5,
             "a deleted Node's routes go")
    took = time.monotonic() - t0
    assert took <= 1.0, f"a deleted Node's routes went after {took:.2f}s"
    assert probe.ping(c.pods[0].netns, c.pods[2].ip), "the remaining nodes lost each other"


def test_a_node_without_pod_cidrs_stays_not_ready_until_the_controller_manager_assigns_one() -> None:
    """kubelet must keep such a node NotReady: no conflist, CNI STATUS code 50, /readyz 503;
    once kube-controller-manager runs and assigns podCIDRs the agent becomes ready on its own."""
    c = Cluster(1, "host-gw", datastore="kubernetes", controllers=False)
    try:
        c.up(wait_ready=False)
        wait_for(lambda: "podCIDRs" in health(c, 0, "health", "--ready").stdout, 15,
                 "the agent tried to join, and says why not")
        r = health(c, 0, "health", "--ready")
        assert r.returncode == 1 and '"ready": false' in r.stdout, r.stdout + r.stderr
        doc = subprocess.run(["ip", "netns", "exec", c.nodes[0], sys.executable, "-m", "podnet.cli", "doctor",
                              "--socket", c.sock(0), "--bin-dir", c.bin_dir, "--json"], capture_output=True, text=True)
        finding = next(f for f in json.loads(doc.stdout) if f["check"] == "node network")
        assert doc.returncode == 1 and finding["level"] == "fail" and "podCIDRs" in finding["detail"], finding
        assert not os.path.exists(c.conflist_path(0)), "the conflist was written before the node was ready"
        status_conf = {"cniVersion": "1.1.0", "name": "podnet-lab", "type": "podnet", "mode": "ptp",
                       "agentSocket": c.sock(0), "ipam": {"type": "podnet-host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}}
        st = subprocess.run(["ip", "netns", "exec", c.nodes[0], f"{c.bin_dir}/podnet"],
                            input=json.dumps(status_conf), text=True, capture_output=True,
                            env={"CNI_COMMAND": "STATUS", "CNI_PATH": c.bin_dir, "PATH": "/usr/bin:/bin"})
        assert st.returncode != 0 and json.loads(st.stdout)["code"] == 50, st.stdout

        c.start_controllers()                            # the controller manager assigns podCIDRs
        wait_for(lambda: health(c, 0, "health", "--ready").returncode == 0, 30,
                 "the node becomes ready after getting its podCIDRs")
        cidrs, writer = c.kube.pod_cidrs("n1")
        assert writer == "kube-controller-manager"
        wait_for(lambda: os.path.exists(c.conflist_path(0)), 5, "the conflist is written once ready")
        assert c.conflist(0)["plugins"][0]["ipam"]["ranges"] == [[{"subnet": cidrs[0]}]]
        st = subprocess.run(["ip", "netns", "exec", c.nodes[0], f"{c.bin_dir}/podnet"],
                            input=json.dumps(status_conf), text=True, capture_output=True,
                            env={"CNI_COMMAND": "STATUS", "CNI_PATH": c.bin_dir, "PATH": "/usr/bin:/bin"})
        assert st.returncode == 0, st.stdout
        c.procs["agent0"].terminate()                    # SIGTERM (an upgrade): the conflist stays,
        c.procs["agent0"].wait(10)                       # so the node's pods remain deletable
        assert os.path.exists(c.conflist_path(0)), "SIGTERM removed the node's conflist"
    finally:
        c.down()


def test_leaked_leases_are_released_only_when_no_pod_holds_them_and_they_are_old() -> None:
    """A pod whose sandbox vanished without DEL keeps its host-local lease; the agent compares
    this node's Pods (their status.podIPs, field selector spec.nodeName) with the leases and
    releases the orphan once it is older than --leak-grace — never a lease a pod holds, never a
    fresh one, and another node's pod with the same address does not count."""
    c = Cluster(2, "host-gw", datastore="kubernetes",
                agent_args=("--leak-grace", "3600", "--leak-gc-interval", "0.3", "--route-interval", "0.3"))
    try:
        c.up()
        kept, leaked = c.add_pod(0), c.add_pod(0)
        lease = os.path.join(c.ipam_dir(0), "podnet-lab", leaked.ip)
        subprocess.run(["ip", "netns", "del", leaked.name], capture_output=True)   # gone without DEL …
        c.kube.delete_pod(leaked.name)                                            # … and from the API
        c.pods.remove(leaked)
        c.kube.create_pod("elsewhere", "n2")                                      # same address, other node
        c.kube.report_pod_ips("elsewhere", "n2", [leaked.ip])
        checks = c.agent_log(0).count("leak check")
        wait_for(lambda: c.agent_log(0).count("leak check") >= checks + 3, 15, "the agent checked for leaks")
        assert os.path.exists(lease), "a lease younger than --leak-grace was released"
        c.kill_agent(0)
        c.agent_args = ("--leak-grace", "1", "--leak-gc-interval", "0.3", "--route-interval", "0.3")
        c.start_agent(0)
        wait_for(lambda: not os.path.exists(lease), 15, "the leaked lease is released once old")
        assert os.path.exists(os.path.join(c.ipam_dir(0), "podnet-lab", kept.ip)), "a live pod's lease was released"
    finally:
        c.down()


def test_the_api_server_restarted_under_the_agents_loses_no_route_and_they_follow_again() -> None:
    c = Cluster(2, "host-gw", datastore="kubernetes")
    try:
        c.up()
        for i in range(2):
            c.add_pod(i)
        c.wait_converged(10)
        before = [c.podnet_routes(i) for i in range(2)]
        c.cp.procs["kube-apiserver"].kill()
        c.cp.procs["kube-apiserver"].wait()
        deadline = time.monotonic() + 3                  # while it is down, routes stay as they were
        while time.monotonic() < deadline:
            assert [c.podnet_routes(i) for i in range(2)] == before, "a route went while the API was down"
            time.sleep(0.1)
        assert probe.ping(c.pods[0].netns, c.pods[1].ip)
        ns = f"pnlab-{c.tag}-outage"                     # pods still come and go on the node's podCIDR
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            res = c.cni(0, "ADD", ns, f"/run/netns/{ns}")
            assert res is not None and probe.ping(f"/run/netns/{ns}", c.pods[1].ip), "a pod made during the outage"
            c.cni(0, "DEL", ns, f"/run/netns/{ns}")
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        c.cp.restart_apiserver()
        j = c.add_node()                                 # a change after the restart is followed
        c.add_pod(j)
        took = c.wait_converged(20)
        assert took < 20
        c.kill_agent(j)
        c.kube.delete_node(f"n{j + 1}")
        wait_for(lambda: all(f"{FABRIC_NET}.{j + 1}" not in c.podnet_routes(i).values() for i in (0, 1)), 5,
                 "a node deleted after the restart loses its routes")
    finally:
        c.down()


def test_a_watch_cut_off_while_nodes_change_and_etcd_compacts_catches_up() -> None:
    """The agent's watch is cut off (its node cannot reach the API, either way), Nodes change, etcd
    compacts past the watch's resourceVersion and the API server restarts (its watch cache goes):
    once the node reaches the API again the agent learns what it missed — by a 410 Gone and a
    relist, or by resuming where the API server can still serve it (which one depends on the
    API server's watch cache; observed both) — and routes the node added meanwhile."""
    c = Cluster(2, "host-gw", datastore="kubernetes")
    try:
        c.up()
        # both ways: with only its own packets dropped, n1 still received the events the API server
        # pushed down the open watch, so it was never behind
        drop = f"add table inet pnt_cut; add chain inet pnt_cut out {{ type filter hook output priority 0; }}; " \
               f"add rule inet pnt_cut out ip daddr {c.cp.addr} tcp dport 6443 drop; " \
               f"add chain inet pnt_cut in {{ type filter hook input priority 0; }}; " \
               f"add rule inet pnt_cut in ip saddr {c.cp.addr} tcp sport 6443 drop"
        subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", drop], check=True)
        for k in range(30):
            c.kube.annotate("n2", "lab.podnet.io/tick", str(k))
        j = c.add_node()                                 # a node n1's agent does not hear about
        cidr = c.kube.pod_cidrs(f"n{j + 1}")[0][0]
        c.etcd_compact()
        c.cp.restart_apiserver()
        assert cidr not in c.podnet_routes(0), "n1 heard of the new node through the cut"
        subprocess.run(["ip", "netns", "exec", c.nodes[0], "nft", "delete table inet pnt_cut"], check=True)
        wait_for(lambda: cidr in c.podnet_routes(0), 60, "the node added during the cut is routed once it reconnects")
        log = c.agent_log(0)
        assert "Nodes watch: the API server is unreachable" in log or "is gone (410" in log, log[-3000:]
    finally:
        c.down()


def test_a_right_taken_away_degrades_the_node_keeps_its_routes_and_recovers() -> None:
    c = Cluster(2, "host-gw", datastore="kubernetes", agent_args=("--watch-timeout", "2"))
    try:
        c.up()
        for i in range(2):
            c.add_pod(i)
        c.wait_converged(10)
        routes = c.podnet_routes(0)
        rules = c.kube.role_rules()
        cut = [dict(r, verbs=[v for v in r["verbs"] if v not in ("list", "watch")]) if r["resources"] == ["nodes"]
               else r for r in rules]
        c.kube.set_role_rules(cut)
        wait_for(lambda: "degraded" in health(c, 0, "health", "--ready").stdout, 30,
                 "readiness says the Nodes can no longer be followed")
        ready = health(c, 0, "health", "--ready")
        assert ready.returncode == 0 and "403" in ready.stdout, ready.stdout       # pods may still start
        doc = subprocess.run(["ip", "netns", "exec", c.nodes[0], sys.executable, "-m", "podnet.cli", "doctor",
                              "--socket", c.sock(0), "--bin-dir", c.bin_dir, "--json"], capture_output=True, text=True)
        finding = next(f for f in json.loads(doc.stdout) if f["check"] == "node network")
        assert finding["level"] == "warn" and "403" in finding["detail"], finding
        assert "refused" in c.agent_log(0)
        assert c.podnet_routes(0) == routes and probe.ping(c.pods[0].netns, c.pods[1].ip), "routes were lost"
        c.kube.set_role_rules(rules)
        wait_for(lambda: "degraded" not in health(c, 0, "health", "--ready").stdout, 30,
                 "the agent follows the Nodes again once the right is back")
    finally:
        c.down()
