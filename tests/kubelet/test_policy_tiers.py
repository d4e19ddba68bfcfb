"""ClusterNetworkPolicy on real nodes (issue 33): the CRD from podnet's manifest, the agents' watch,
the tiers with real packets across nodes — an Admin Deny a NetworkPolicy cannot open, Pass handing
over to NetworkPolicy, a Baseline deny a NetworkPolicy overrides, priority order — and `podnet
policy explain` in the agent naming the tier, policy and rule.  (The upstream conformance suite is
scripts/cnp-conformance.sh.)  Runs on the package's shared lab (conftest.py)."""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

from podnet.lab import kubechecks as kc
from podnet.lab.images import PROBE
from tests.helpers.kubernetes import have_kubernetes

missing = have_kubernetes() or ", ".join(t for t in ("containerd", "ctr", "runc", "mmdebstrap", "go")
                                         if not shutil.which(t))
pytestmark = [pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}"),
              pytest.mark.timeout(900)]

NS_LABEL = "kubernetes.io/metadata.name"


def pod(name: str, ns: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "probe", "image": PROBE, "imagePullPolicy": "Never", "ports": [{"containerPort": 80}],
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}


def cnp(name: str, tier: str, priority: int, subject_ns: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
            "spec": {"tier": tier, "priority": priority, "subject": {"namespaces": {"matchLabels": {NS_LABEL: subject_ns}}},
                     "ingress": rules}}


def from_ns(action: str, ns: str, name: str = "") -> dict[str, Any]:
    return {**({"name": name} if name else {}), "action": action, "from": [{"namespaces": {"matchLabels": {NS_LABEL: ns}}}]}


@pytest.fixture(scope="module")
def world(klab: Any) -> Any:
    for ns in ("cnp-a", "cnp-b"):
        klab.kubectl("create", "namespace", ns)
    kc.apply(klab, pod("srv", "cnp-a", "n1"), pod("cli", "cnp-b", "n2"))
    klab.kubectl("wait", "--for=condition=Ready", "-n", "cnp-a", "pod/srv", "--timeout=90s", timeout=100)
    klab.kubectl("wait", "--for=condition=Ready", "-n", "cnp-b", "pod/cli", "--timeout=90s", timeout=100)
    srv = kc.running_pods(klab, "app=srv", "cnp-a")[0]
    cli = kc.running_pods(klab, "app=cli", "cnp-b")[0]
    yield klab, srv, cli
    klab.kubectl("delete", "clusternetworkpolicies", "--all", "--wait=true")
    klab.kubectl("delete", "namespace", "cnp-a", "cnp-b", "--wait=false")


def reaches(klab: Any, cli: kc.RunningPod, srv: kc.RunningPod) -> bool:
    return kc.probe(klab, cli, "tcp", srv.ip, 80, timeout=2) == "srv"


def eventually(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def explain(klab: Any, node: str, src: str, dst: str) -> str:
    agent = next(p for p in klab.get("pods", "-n", "podnet-system")["items"] if p["spec"].get("nodeName") == node)
    return str(klab.kubectl("exec", "-n", "podnet-system", agent["metadata"]["name"], "-c", "agent", "--",
                            "podnet", "policy", "explain", src, dst, "80/tcp", check=False, timeout=30))


def test_the_crd_ships_with_podnet(klab: Any) -> None:
    crd = klab.get("crd", "clusternetworkpolicies.policy.networking.k8s.io")
    assert crd["metadata"]["annotations"]["policy.networking.k8s.io/bundle-version"] == "v0.3.1"
    assert "v1beta1" in [v["name"] for v in crd["spec"]["versions"] if v["served"]]


def test_tiers_on_real_nodes(world: Any) -> None:
    klab, srv, cli = world
    assert reaches(klab, cli, srv), "open before any policy"
    allow_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "allow-all", "namespace": "cnp-a"},
                 "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}
    kc.apply(klab, allow_all, cnp("block-b", "Admin", 20, "cnp-a", [from_ns("Deny", "cnp-b", "no-b")]))
    eventually(lambda: not reaches(klab, cli, srv), "an Admin Deny closes it, whatever NetworkPolicy allows")
    out = explain(klab, "n1", "cnp-b/cli", "cnp-a/srv")
    assert "DENIED by ClusterNetworkPolicy block-b (Admin tier, priority 20) rule no-b: Deny" in out, out
    kc.apply(klab, cnp("pass-b", "Admin", 10, "cnp-a", [from_ns("Pass", "cnp-b", "to-np")]))
    eventually(lambda: reaches(klab, cli, srv), "a higher-priority Pass hands it to NetworkPolicy (allow-all)")
    klab.kubectl("delete", "networkpolicy", "-n", "cnp-a", "allow-all")
    deny_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny-all", "namespace": "cnp-a"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    kc.apply(klab, deny_all)
    eventually(lambda: not reaches(klab, cli, srv), "Pass → NetworkPolicy deny-all decides")
    klab.kubectl("delete", "clusternetworkpolicy", "pass-b", "block-b", "--wait=true")
    klab.kubectl("delete", "networkpolicy", "-n", "cnp-a", "deny-all")
    kc.apply(klab, cnp("baseline-deny", "Baseline", 5, "cnp-a", [from_ns("Deny", "cnp-b")]))
    eventually(lambda: not reaches(klab, cli, srv), "the Baseline denies a pod no NetworkPolicy selects")
    from_b = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "from-b", "namespace": "cnp-a"},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NS_LABEL: "cnp-b"}}}]}]}}
    kc.apply(klab, from_b)
    eventually(lambda: reaches(klab, cli, srv), "a NetworkPolicy overrides the Baseline")
    out = explain(klab, "n1", "cnp-b/cli", "cnp-a/srv")
    assert "allowed by NetworkPolicy cnp-a/from-b" in out, out
    shown = str(klab.kubectl("exec", "-n", "podnet-system", next(
        p["metadata"]["name"] for p in klab.get("pods", "-n", "podnet-system")["items"]
        if p["spec"].get("nodeName") == "n1"), "-c", "agent", "--", "podnet", "policy", "--json", "show", "cnp-a/srv",
        check=False, timeout=30))
    doc = json.loads(shown)
    assert doc["ingress"]["baseline"][0]["policy"] == "baseline-deny" and "baseline_note" in doc["ingress"], doc
