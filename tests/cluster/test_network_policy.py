"""NetworkPolicy on the virtual cluster with a REAL control plane: policies, pods and namespaces
are API objects, each node's agent enforces them on nftables, and every cell of every matrix is
a real connection between pod namespaces (same-node and cross-node pairs).

The expected matrices come from tests/helpers/netpol_model.py (the reference model, written from
the API documentation); a change is probed only once every agent reports that its kernel holds
that object's resourceVersion (GET /policy/seen) — waited for, never slept."""
from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from podnet.lab import Cluster
from podnet.lab.netpol import PORTS, PolicyLab, render_matrix
from podnet.lab.probe import PodServers
from podnet.net.netns import move_this_thread
from tests.helpers.kubernetes import needs_kubernetes
from tests.helpers.netpol_cases import CASES, pol
from tests.helpers.netpol_steps import check_matrix, policy_lab, run_steps
from tests.helpers.netpol_world import random_policies

pytestmark = needs_kubernetes


@pytest.fixture(scope="module")
def lab() -> Iterator[PolicyLab]:
    with policy_lab(Cluster(3, "vxlan", datastore="kubernetes", network_policy=True)) as pl:
        yield pl


@pytest.fixture
def fresh(lab: PolicyLab) -> PolicyLab:
    lab.reset()
    return lab


def test_the_lab_spans_nodes(lab: PolicyLab) -> None:
    """Nine pods on three nodes: the matrices below have same-node and cross-node cells."""
    nodes = lab.node_of()
    assert len(set(nodes.values())) == 3
    same = sum(1 for s in nodes for d in nodes if s != d and nodes[s] == nodes[d])
    assert same and same < 72


@pytest.mark.parametrize("case", sorted(CASES))
def test_e2e_case(fresh: PolicyLab, case: str) -> None:
    run_steps(fresh, case, CASES[case])


@pytest.mark.parametrize("seed", range(12))
def test_generated_policies(fresh: PolicyLab, seed: int) -> None:
    """Random selectors, ports and ipBlocks (seeded: the unit tier runs 160 of these against the
    model through the rule interpreter; here a dozen go through the real API and kernels)."""
    rng = random.Random(7000 + seed)
    for p in random_policies(rng, fresh.ip_of()):
        fresh.apply(p)
    check_matrix(fresh, 80, "TCP", f"seed {seed}")
    check_matrix(fresh, 81, "UDP", f"seed {seed}")


def test_sctp_policy_gets_an_event(fresh: PolicyLab) -> None:
    """This kernel has no SCTP: a policy with SCTP rules is enforced without them, and says so."""
    if os.path.exists("/proc/net/sctp"):
        pytest.skip("this kernel has SCTP")
    fresh.apply(pol("x", "sctp-only", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": 80, "protocol": "SCTP"}]}]))
    deadline = time.monotonic() + 10
    while not any(e["involvedObject"]["name"] == "sctp-only" for e in fresh.kube.events("SCTPUnsupported", "x")):
        assert time.monotonic() < deadline, "no SCTPUnsupported Event for the policy"
        time.sleep(0.05)
    check_matrix(fresh, 80, "TCP", "SCTP-only policy")


def test_policy_show_and_explain(fresh: PolicyLab) -> None:
    """`podnet policy show` and `explain` on a node, as an operator runs them."""
    fresh.apply(pol("x", "a-from-y-on-81", {"matchLabels": {"pod": "a"}},
                    ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                              "ports": [{"port": 81}]}]))
    c, node = fresh.c, fresh.pods["x/a"].node

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", c.nodes[node], sys.executable, "-m", "podnet.cli", "policy",
                               "--socket", c.sock(node), *argv], capture_output=True, text=True)
    show = cli("show", "x/a")
    assert show.returncode == 0, show.stderr
    assert "ingress: isolated by x/a-from-y-on-81" in show.stdout and "pods [y/a y/b y/c] on TCP/81" in show.stdout, \
        show.stdout
    assert "egress: not isolated" in show.stdout
    denied = cli("explain", "y/b", "x/a", "80/tcp")
    assert denied.returncode == 3 and "DENIED" in denied.stdout and \
        "isolated by NetworkPolicy x/a-from-y-on-81" in denied.stdout, denied.stdout
    allowed = cli("explain", "y/b", fresh.pods["x/a"].ip, "81")
    assert allowed.returncode == 0 and "ALLOWED" in allowed.stdout and \
        "allowed by NetworkPolicy x/a-from-y-on-81" in allowed.stdout
    assert fresh.matrix(80, "TCP")[("y/b", "x/a")] is False and fresh.matrix(81, "TCP")[("y/b", "x/a")] is True
    missing = cli("show", "nowhere/none")
    assert missing.returncode == 1 and "no pod" in missing.stderr


# ------------------------------------------------------------------ races
class Hammer:
    """A client in a pod's netns connecting to ip:port in a tight loop until stopped; counts
    connections that got through."""

    def __init__(self, netns: str, ip: str | None, port: int = 80) -> None:
        self.netns, self.ip, self.port = netns, ip, port
        self.tries = self.hits = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        move_this_thread(self.netns)
        while not self.stop_event.is_set():
            if self.ip is None:
                time.sleep(0.001)
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.2)
            try:
                s.connect((self.ip, self.port))
                self.hits += 1
            except OSError:
                pass
            finally:
                s.close()
                self.tries += 1

    def stop(self) -> tuple[int, int]:
        self.stop_event.set()
        self.thread.join(5)
        return self.hits, self.tries


def _new_pod(lab: PolicyLab, node: int, name: str, labels: dict[str, str], target_ip: str,
             seconds: float = 2.0) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """A pod made with a client inside it hammering target_ip from before its ADD and clients in
    x/a, x/b hammering it from the moment its ADD returns; (its out hits/tries, the ins')."""
    out: dict[str, Hammer] = {}

    def before(path: str) -> None:
        lab.servers[f"x/{name}"] = PodServers(path)
        out["h"] = Hammer(path, target_ip)

    pod = lab.c.add_pod(node, labels, "x", name, PORTS, before_add=before)
    ins = [Hammer(lab.pods[k].netns, pod.ip) for k in ("x/a", "x/b")]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and min(h.tries for h in ins) < 50:
        time.sleep(0.05)
    time.sleep(max(0.0, deadline - time.monotonic()))  # the hammering window itself (not synchronisation)
    result = out["h"].stop(), [h.stop() for h in ins]
    lab.servers.pop(f"x/{name}").stop()
    lab.c.del_pod(pod)
    return result


def test_trace_names_the_policy_that_drops_a_connection(fresh: PolicyLab) -> None:
    """`podnet trace` on the Kubernetes datastore: pods by namespace/name, the path across nodes,
    and the NetworkPolicy verdict at the hop where it applies."""
    c = fresh.c
    src, dst = next((s, d) for s in ("y/a", "y/b", "y/c") for d in ("x/a", "x/b", "x/c")
                    if fresh.pods[s].node != fresh.pods[d].node)

    def trace(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", c.fab, sys.executable, "-m", "podnet.cli", "trace",
                               "--kubeconfig", c.cp.admin_kubeconfig(), *argv], capture_output=True, text=True,
                              timeout=60)
    ok = trace(src, dst, "--port", "80")
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("path works"), ok.stdout + ok.stderr
    name = dst.split("/")[1]
    fresh.apply(pol("x", "deny-in", {"matchLabels": {"pod": name}}, ingress=[]))
    denied = trace(src, dst, "--port", "80")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert f"✗ dropped: NetworkPolicy x/deny-in (ingress, pod {dst})" in denied.stdout, denied.stdout
    assert "podnet policy explain" in denied.stdout


def test_no_startup_window(fresh: PolicyLab) -> None:
    """A new pod an existing policy isolates (both ways) never passes one connection: not from
    clients that start the moment its ADD returns, not from its own client that was trying since
    before its interface existed.  The same hammering against a pod no policy selects gets through
    (the clients can tell)."""
    fresh.apply(pol("x", "isolate-new", {"matchLabels": {"new": "yes"}}, ingress=[], egress=[]))
    target = fresh.pods["y/a"].ip
    (o_hits, o_tries), ins = _new_pod(fresh, 0, "n-isolated", {"pod": "n", "new": "yes"}, target)
    assert o_tries > 10 and all(t > 10 for _, t in ins), (o_tries, ins)
    assert o_hits == 0, f"the isolated pod got out {o_hits} times in {o_tries} tries"
    assert all(h == 0 for h, _ in ins), f"connections reached the isolated pod: {ins}"
    (o_hits, _), ins = _new_pod(fresh, 0, "n-open", {"pod": "n"}, target)
    assert o_hits > 0 and all(h > 0 for h, _ in ins), ("a pod no policy selects must be reachable", o_hits, ins)


def test_label_changes_take_effect_within_a_second(fresh: PolicyLab) -> None:
    fresh.apply(pol("x", "only-from-blue", {"matchLabels": {"pod": "a"}},
                    ingress=[{"from": [{"podSelector": {"matchLabels": {"team": "blue"}}},
                                       {"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]))
    check_matrix(fresh, 80, "TCP", "before relabelling")
    took = [fresh.label_pod("x", "b", {"pod": "b", "team": "blue"})]        # into the selector
    check_matrix(fresh, 80, "TCP", "x/b joined team blue")
    took.append(fresh.label_pod("x", "b", {"pod": "b"}))                    # and out again
    check_matrix(fresh, 80, "TCP", "x/b left team blue")
    took.append(fresh.label_namespace("z", {"team": "blue"}))               # a whole namespace
    check_matrix(fresh, 80, "TCP", "namespace z joined team blue")
    took.append(fresh.label_namespace("z", {}))
    check_matrix(fresh, 80, "TCP", "namespace z left team blue")
    assert max(took) < 1.0, f"from the API's answer to every node's table: {[round(t, 3) for t in took]} s"
    fresh.delete("x", "only-from-blue")
    check_matrix(fresh, 80, "TCP", "policy deleted: open again")


def _nft(lab: PolicyLab, node: int, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", lab.c.nodes[node], "nft", *argv], capture_output=True, text=True,
                          check=True).stdout


def _wait_policy_ready(lab: PolicyLab, node: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if lab.seen(node, "-")[1]:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"n{node + 1}'s agent did not read the policies again"
        time.sleep(0.05)


def test_agent_restart_keeps_enforcement_and_resync_fixes_drift(fresh: PolicyLab) -> None:
    fresh.apply(pol("x", "deny-ingress", ingress=[]))
    c = fresh.c
    c.kill_agent(0)
    check_matrix(fresh, 80, "TCP", "agent on n1 killed: its rules stay")
    # drift while it is away: an isolated pod's map entry removed by hand
    local = next(k for k in ("x/a", "x/b", "x/c") if fresh.pods[k].node == 0)
    _nft(fresh, 0, "delete", "element", "inet", "podnet_policy", "in4", f"{{ {fresh.pods[local].ip} }}")
    # no agent: a new pod cannot be policed, so it is refused (code 11) and nothing of it stays
    ns = c.add_netns("refused")
    proc = subprocess.run(["ip", "netns", "exec", c.nodes[0], f"{c.bin_dir}/podnet"],
                          input=json.dumps({"cniVersion": "1.0.0", "name": "podnet-lab", **c.conflist(0)["plugins"][0]}).encode(),
                          env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "refused1", "CNI_NETNS": f"/run/netns/{ns}",
                               "CNI_IFNAME": "eth0", "CNI_PATH": c.bin_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                               "CNI_ARGS": "K8S_POD_NAMESPACE=x;K8S_POD_NAME=late"}, capture_output=True)
    assert proc.returncode != 0 and json.loads(proc.stdout)["code"] == 11, proc.stdout
    links = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True).stdout
    assert "eth0" not in links, "the refused ADD left the pod's interface behind"
    c.start_agent(0)
    _wait_policy_ready(fresh, 0)
    check_matrix(fresh, 80, "TCP", "agent back: the drift is repaired")


def test_api_server_down_keeps_rules_and_fails_closed(fresh: PolicyLab) -> None:
    fresh.apply(pol("y", "deny-from-x", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "y"}}}]}]))
    c = fresh.c
    c.cp.kill_apiserver()
    try:
        check_matrix(fresh, 80, "TCP", "API server down")
        # a pod the agent cannot look up (not in its cache, the API away): denied both ways
        ns = c.add_netns("unknown")
        servers = PodServers(f"/run/netns/{ns}")
        res = c.cni(1, "ADD", "unknown1", f"/run/netns/{ns}", args="K8S_POD_NAMESPACE=z;K8S_POD_NAME=unknown")
        assert res is not None
        ip = res["ips"][0]["address"].split("/")[0]
        ins = Hammer(fresh.pods["z/a"].netns, ip)
        out = Hammer(f"/run/netns/{ns}", fresh.pods["z/b"].ip)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            time.sleep(0.05)
        (ih, it), (oh, ot) = ins.stop(), out.stop()
        assert it > 5 and ot > 5 and ih == 0 and oh == 0, ("an unknown pod must be denied", ih, it, oh, ot)
        from podnet.wire import http_get_unix
        _, metrics = http_get_unix(c.sock(1), "/metrics")
        assert b"podnet_policy_pods_failed_closed 1.0" in metrics, metrics.decode()[-2000:]
    finally:
        c.cp.resume_apiserver()
    # the API is back: the pod is created, its policy computed (namespace z: none) → open
    c.kube.create_pod("unknown", "n2", {"pod": "u"}, "z", PORTS)
    c.kube.report_pod_ips("unknown", "n2", [ip], "z")
    deadline = time.monotonic() + 20
    while True:
        ins = Hammer(fresh.pods["z/a"].netns, ip)
        t0 = time.monotonic()
        while ins.tries < 3 and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        hits, _ = ins.stop()
        if hits:
            break
        assert time.monotonic() < deadline, "the pod stayed denied after the API came back"
    c.cni(1, "DEL", "unknown1", f"/run/netns/{ns}", args="K8S_POD_NAMESPACE=z;K8S_POD_NAME=unknown")
    servers.stop()
    c.kube.delete_pod("unknown", "z")


# ------------------------------------------------------------------ datapath
@pytest.mark.skipif(not any(os.path.exists(os.path.join(d, "iperf3")) for d in ("/usr/bin", "/usr/local/bin")),
                    reason="iperf3 is not installed (scripts/setup.sh installs it)")
def test_throughput_with_200_policies(fresh: PolicyLab) -> None:
    """TCP pod → pod on one node with 200 policies selecting the server ≥ 0.9× with no policy at
    all: per packet, one map lookup and conntrack (a connection's first packet alone walks the
    policies).  Paired rounds — without, then with the 200 — and the median ratio of 5 (the
    machine is shared and noisy)."""
    nodes = fresh.node_of()
    server = "x/a"
    client = next(k for k in fresh.pods if nodes[k] == nodes[server] and not k.startswith("x/"))
    allow_client = pol("x", "p199", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": client.split("/")[0]}}}]}])
    ratios = []
    for _ in range(5):
        fresh.delete_all()
        without = fresh.iperf(server, client)
        for i in range(199):
            fresh.kube.apply_policy(pol("x", f"p{i:03d}", {"matchLabels": {"pod": "a"}},
                                        ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": f"nobody-{i}"}}}],
                                                  "ports": [{"port": 80 + i % 3}]}]))
        fresh.apply(allow_client)            # the last of the 200: waited for on every node
        counts = _nft(fresh, nodes[server], "list", "table", "inet", "podnet_policy").count("chain p")
        assert counts >= 200, f"only {counts} policy chains on the server's node"
        ratios.append(fresh.iperf(server, client) / without)
    fresh.delete_all()
    ratio = statistics.median(ratios)
    print(f"throughput with 200 policies / without, 5 paired rounds: {[round(r, 3) for r in ratios]}, median {ratio:.3f}")
    assert ratio >= 0.9, f"with 200 policies {ratio:.2f}× the throughput without (rounds: {[round(r, 2) for r in ratios]})"


# ------------------------------------------------------------------ ClusterNetworkPolicy's CRD
def test_cluster_policy_crd_installed_after_the_agents_is_followed(fresh: PolicyLab) -> None:
    """The agents started on a cluster without the ClusterNetworkPolicy CRD (NetworkPolicy alone
    works there); once an administrator installs it, an Admin-tier Deny is enforced on every node
    and its deletion undone — no agent restart."""
    from podnet.agent.kubewatch import ABSENT_RECHECK
    assert "not served by the API (CRD not installed)" in fresh.c.agent_log(0)
    fresh.kube.apply_crds()
    name = "deny-y-to-x"
    cnp = {"metadata": {"name": name},
           "spec": {"tier": "Admin", "priority": 10,
                    "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
                    "ingress": [{"name": "no-y", "action": "Deny",
                                 "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}}
    try:
        fresh.apply_cluster_policy(cnp, timeout=ABSENT_RECHECK * 2 + 10)
        got = fresh.matrix(80, "TCP")
        want = {(src, dst): not (src.startswith("y/") and dst.startswith("x/")) for src, dst in got}
        assert got == want, render_matrix(got)
    finally:
        fresh.delete_cluster_policy(name)
    got = fresh.matrix(80, "TCP")
    assert all(got.values()), render_matrix(got)
