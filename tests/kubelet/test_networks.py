"""Pods with more than one network on real nodes (issue 32), no Multus: NetworkAttachmentDefinitions
(the CRD ships in podnet's manifest) named by the pod's `k8s.v1.cni.cncf.io/networks`, run by the
`podnet` plugin on net1, net2, …; every annotation form, the exact `network-status`, traffic on the
extra network from the right peer (the fabric host sees the pod's own net1 address), default-route,
a missing NAD (the pod waits with an Event naming it, nothing half made, then starts once the NAD
exists), and nothing left on any network after the pods go.  Runs on the package's shared lab
(conftest.py), before test_real_nodes.py's disruptive tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

import pytest

from podnet.lab import attachchecks as ac
from podnet.lab import kubechecks as kc
from podnet.lab import underlaychecks as uc
from podnet.lab.images import PROBE
from tests.helpers.kubernetes import have_kubernetes

missing = have_kubernetes() or ", ".join(t for t in ("containerd", "ctr", "runc", "mmdebstrap", "go")
                                         if not shutil.which(t))
pytestmark = [pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}"),
              pytest.mark.timeout(900)]

STATIC = ac.static_macvlan("mvstatic")


def pod(name: str, networks: str, node: str = "n1") -> dict[str, Any]:
    return ac.pod_with_networks(name, PROBE, node, networks)


def running(klab: Any, name: str, timeout: float = 90) -> dict[str, Any]:
    return ac.wait_running(klab, name, timeout)


def in_pod(klab: Any, name: str, *argv: str) -> str:
    return ac.in_pod(klab, name, *argv)


@pytest.fixture(scope="module")
def nads(klab: Any) -> Any:
    klab.kubectl("create", "namespace", "other")
    kc.apply(klab, ac.nad("mvlan", "default", ac.fabric_macvlan("mvlan", 64)),
             ac.nad("mvlan", "other", ac.fabric_macvlan("mvlan", 72)), ac.nad("mvstatic", "default", STATIC))
    yield klab
    klab.kubectl("delete", "namespace", "other", "--wait=false")


@pytest.mark.parametrize("form, want", [
    ("mvlan", [("default/mvlan", "net1")]),
    ("other/mvlan@data0, mvlan", [("other/mvlan", "data0"), ("default/mvlan", "net2")]),
])
def test_text_forms_and_the_exact_network_status(nads: Any, form: str, want: list[tuple[str, str]]) -> None:
    klab = nads
    name = f"att-{abs(hash(form)) % 10000}"
    kc.apply(klab, pod(name, form))
    try:
        p = running(klab, name)
        status = json.loads(p["metadata"]["annotations"][ac.STATUS])
        ip_a = in_pod(klab, name, "ip", "-o", "addr")
        assert status[0] == {"name": "podnet", "interface": "eth0", "ips": [p["status"]["podIP"]],
                             "mac": status[0]["mac"], "default": True}, status
        assert [(s["name"], s["interface"]) for s in status[1:]] == want, status
        for s in status[1:]:
            assert "default" not in s and len(s["ips"]) == 1 and s["ips"][0].startswith("10.97.0.")
            assert f"{s['interface']}    inet {s['ips'][0]}/24" in ip_a, ip_a
            link = in_pod(klab, name, "ip", "link", "show", s["interface"])
            assert s["mac"] in link, link
        with uc.fabric_server(klab) as server:       # the fabric host sees the pod's own net1 address
            net1 = status[1]["ips"][0]
            seen = in_pod(klab, name, "pnprobe", "probe", "-s", net1, "-p", "/ip", "tcp", server, "80").strip()
            assert seen == net1, seen
    finally:
        klab.kubectl("delete", "pod", name, "--wait=true")


def test_json_form_with_ips_mac_and_default_route(nads: Any) -> None:
    klab = nads
    sel = [{"name": "mvstatic", "ips": ["10.97.0.90/24"], "mac": "02:97:00:00:00:90", "default-route": ["10.97.0.254"],
            "interface": "fab0"}]
    kc.apply(klab, pod("att-json", json.dumps(sel), node="n2"))
    try:
        p = running(klab, "att-json")
        status = json.loads(p["metadata"]["annotations"][ac.STATUS])
        assert status[1] == {"name": "default/mvstatic", "interface": "fab0", "ips": ["10.97.0.90"],
                             "mac": "02:97:00:00:00:90", "default": True}, status
        assert "default" not in status[0], "the cluster network is not the default route any more"
        routes = in_pod(klab, "att-json", "ip", "route")
        assert "default via 10.97.0.254 dev fab0" in routes and "dev eth0" in routes, routes
        assert kc.http_from(klab.fab, "10.97.0.90", 80) == "att-json", "the fabric → the pod's fab0"
    finally:
        klab.kubectl("delete", "pod", "att-json", "--wait=true")


def test_a_missing_nad_keeps_the_pod_waiting_with_an_event_then_it_starts(nads: Any) -> None:
    klab = nads
    leases = klab.hosts[0].path("/var/lib/cni") / "networks" / "podnet"
    before = set(os.listdir(leases))
    kc.apply(klab, pod("att-wait", "notyet"))
    try:
        deadline = time.monotonic() + 60
        while True:
            events = klab.get("events", "--field-selector", "involvedObject.name=att-wait")["items"]
            if any(e["reason"] == "NetworkNotFound" and "default/notyet" in e["message"] for e in events):
                break
            assert time.monotonic() < deadline, [(e["reason"], e["message"]) for e in events]
            time.sleep(1)
        assert klab.get("pod", "att-wait")["status"].get("phase") == "Pending"
        assert set(os.listdir(leases)) == before, "a pod waiting for its NAD holds a cluster address"
        records = klab.hosts[0].path("/var/lib/cni") / "podnet" / "attachments" / "podnet"
        assert not list(records.glob("*.json")) if records.exists() else True
        kc.apply(klab, ac.nad("notyet", "default", ac.fabric_macvlan("notyet", 80)))
        p = running(klab, "att-wait", timeout=120)              # kubelet retries; now it works
        assert json.loads(p["metadata"]["annotations"][ac.STATUS])[1]["name"] == "default/notyet"
    finally:
        klab.kubectl("delete", "pod", "att-wait", "--wait=true")
        klab.kubectl("delete", "network-attachment-definitions", "notyet", "--ignore-not-found")


def test_nothing_left_on_any_network_after_the_pods_go(nads: Any) -> None:
    klab = nads
    for i in range(2):
        host = klab.hosts[i].path("/var/lib/cni")
        for d in ("networks/mvlan", "networks/notyet", "podnet/attachments/podnet"):
            left = [f for f in (host / d).glob("*") if f.name[0].isdigit() or f.suffix == ".json"] \
                if (host / d).exists() else []
            assert left == [], f"n{i + 1}: {d}: {left}"
        links = json.loads(subprocess.run(["ip", "-n", klab.nodes[i], "-j", "-d", "link"], capture_output=True,
                                          text=True).stdout)
        assert not [lk["ifname"] for lk in links if lk.get("linkinfo", {}).get("info_kind") == "macvlan"]
