"""`podnet agent --datastore kubernetes` on the virtual cluster: three node namespaces whose
agents take everything from Node objects — their podCIDRs (host-local inside them), the
peers' InternalIPs and published VTEP MACs — through the production client (lightkube).

The API server is a TEST DOUBLE (tests/helpers/fakekube.py: Node list/watch/get/create/
patch/delete over HTTP, as the API does) running in the fabric netns: no real API server can
run on this machine.  Nodes are registered the way kubelet and the controller manager would
(InternalIP, spec.podCIDRs) before the agents start."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.lab import ETCD_ADDR, FABRIC_NET, Cluster, free_port
from podnet.net import netns, probe
from tests.helpers.fakekube import Store, ThreadingHTTPServer, node_object, serve
from tests.helpers.traffic import fetch, server


class FakeApi:
    def __init__(self) -> None:
        self.port = free_port()
        self.srv: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{ETCD_ADDR}:{self.port}"

    @property
    def store(self) -> Store:
        return self.srv.RequestHandlerClass.store  # type: ignore[union-attr,attr-defined]

    def start_in(self, lab: Cluster) -> None:
        """Listen in the lab's fabric netns (only this thread enters it, and only to bind)."""
        with netns.opened(f"/run/netns/{lab.fab}") as fd, netns.entered(fd):
            self.srv = serve(ETCD_ADDR, self.port)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        for i in range(len(lab.nodes)):
            self.add_node(i)

    def add_node(self, i: int) -> None:
        store = self.store
        with store.cond:
            obj = node_object(f"n{i + 1}", f"{FABRIC_NET}.{i + 1}", [f"10.244.{i}.0/24"])
            store.nodes[obj["metadata"]["name"]] = obj
            store._event("ADDED", obj)

    def delete_node(self, i: int) -> None:
        store = self.store
        with store.cond:
            store._event("DELETED", store.nodes.pop(f"n{i + 1}"))

    def annotations(self, i: int) -> dict[str, str]:
        store = self.store
        with store.cond:
            return dict(store.nodes[f"n{i + 1}"]["metadata"].get("annotations") or {})

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()


@pytest.fixture(params=["vxlan", "host-gw"])
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[Cluster, FakeApi]]:
    api = FakeApi()
    c = Cluster(3, request.param, datastore="kubernetes", kube_url=api.url, before_agents=api.start_in)
    try:
        c.up()
        yield c, api
    finally:
        c.down()
        api.stop()


def test_nodes_from_the_api_reach_each_other_and_a_deleted_node_loses_its_routes(kube_cluster: Any) -> None:
    c, api = kube_cluster
    for i in range(3):
        ipam = c.conflist(i)["plugins"][0]["ipam"]
        assert ipam["type"] == "podnet-host-local" and ipam["ranges"] == [[{"subnet": f"10.244.{i}.0/24"}]], ipam
        ann = api.annotations(i)
        assert ann["podnet.io/backend"] == c.backend and ann["podnet.io/underlay-addr"] == f"{FABRIC_NET}.{i + 1}"
        assert ("podnet.io/vtep-mac" in ann) == (c.backend == "vxlan")
    store = api.store
    end = time.monotonic() + 5                          # posted just after the conflist is written
    while {e["involvedObject"]["name"] for e in store.recorded if e.get("reason") == "PodnetReady"} != \
            {"n1", "n2", "n3"}:
        assert time.monotonic() < end, f"every node records its readiness as an Event: {store.recorded}"
        time.sleep(0.1)
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
    api.delete_node(2)                                  # `kubectl delete node n3`
    while any(f"{FABRIC_NET}.3" in c.podnet_routes(i).values() for i in (0, 1)):
        assert time.monotonic() - t0 < 5, "a deleted Node's routes stayed"
        time.sleep(0.02)
    took = time.monotonic() - t0
    assert took <= 1.0, f"a deleted Node's routes went after {took:.2f}s"
    assert probe.ping(c.pods[0].netns, c.pods[2].ip), "the remaining nodes lost each other"


def test_a_node_without_pod_cidrs_stays_not_ready_until_it_gets_them() -> None:
    """kubelet must keep such a node NotReady: no conflist, CNI STATUS code 50, /readyz 503;
    once the controller manager assigns podCIDRs the agent becomes ready on its own."""
    import json
    import sys
    api = FakeApi()
    c = Cluster(1, "host-gw", datastore="kubernetes", kube_url=api.url, before_agents=api.start_in)
    try:
        c.up()
        store = api.store
        with store.cond:
            obj = node_object("n2", f"{FABRIC_NET}.2", ["10.244.1.0/24"])
            obj["spec"] = {}                                  # registered, no podCIDRs yet
            store.nodes["n2"] = obj
            store._event("ADDED", obj)
        j = c.add_node(wait_ready=False)

        def probe_ready() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["ip", "netns", "exec", c.nodes[j], sys.executable, "-m", "podnet.cli", "health",
                                   "--socket", c.sock(j), "--ready"], capture_output=True, text=True)
        end = time.monotonic() + 15
        while "podCIDRs" not in (r := probe_ready()).stdout:          # the agent tried to join, and says why not
            assert time.monotonic() < end, r.stdout + r.stderr
            time.sleep(0.1)
        assert r.returncode == 1 and '"ready": false' in r.stdout, r.stdout + r.stderr
        doc = subprocess.run(["ip", "netns", "exec", c.nodes[j], sys.executable, "-m", "podnet.cli", "doctor",
                              "--socket", c.sock(j), "--bin-dir", c.bin_dir, "--json"], capture_output=True, text=True)
        finding = next(f for f in json.loads(doc.stdout) if f["check"] == "node network")
        assert doc.returncode == 1 and finding["level"] == "fail" and "podCIDRs" in finding["detail"], finding
        assert not os.path.exists(c.conflist_path(j)), "the conflist was written before the node was ready"
        status_conf = {"cniVersion": "1.1.0", "name": "podnet-lab", "type": "podnet-ptp", "agentSocket": c.sock(j),
                       "ipam": {"type": "podnet-host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]]}}
        st = subprocess.run(["ip", "netns", "exec", c.nodes[j], f"{c.bin_dir}/podnet-ptp"],
                            input=json.dumps(status_conf), text=True, capture_output=True,
                            env={"CNI_COMMAND": "STATUS", "CNI_PATH": c.bin_dir, "PATH": "/usr/bin:/bin"})
        assert st.returncode != 0 and json.loads(st.stdout)["code"] == 50, st.stdout

        with store.cond:                                      # the controller manager assigns them
            store.nodes["n2"]["spec"] = {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
            store._event("MODIFIED", store.nodes["n2"])
        end = time.monotonic() + 15
        while probe_ready().returncode != 0:
            assert time.monotonic() < end, "the node never became ready after getting its podCIDRs"
            time.sleep(0.3)
        assert c.conflist(j)["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
        st = subprocess.run(["ip", "netns", "exec", c.nodes[j], f"{c.bin_dir}/podnet-ptp"],
                            input=json.dumps(status_conf), text=True, capture_output=True,
                            env={"CNI_COMMAND": "STATUS", "CNI_PATH": c.bin_dir, "PATH": "/usr/bin:/bin"})
        assert st.returncode == 0, st.stdout
        c.procs[f"agent{j}"].terminate()                     # SIGTERM (an upgrade): the conflist stays,
        c.procs[f"agent{j}"].wait(10)                        # so the node's pods remain deletable
        assert os.path.exists(c.conflist_path(j)), "SIGTERM removed the node's conflist"
    finally:
        c.down()
        api.stop()


def test_a_leaked_lease_is_released_only_when_no_pod_holds_it_and_it_is_old() -> None:
    """A pod whose sandbox vanished without DEL keeps its host-local lease; the agent compares
    this node's Pods (the API's status.podIPs) with the leases and releases the orphan once it
    is older than --leak-grace — never a lease a pod holds, never a fresh one."""
    from tests.helpers.fakekube import pod_object
    api = FakeApi()
    c = Cluster(1, "host-gw", datastore="kubernetes", kube_url=api.url, before_agents=api.start_in,
                agent_args=("--leak-grace", "2", "--leak-gc-interval", "0.5", "--route-interval", "0.5"))
    try:
        c.up()
        kept, leaked = c.add_pod(0), c.add_pod(0)
        store = api.store
        with store.cond:
            store.pods.append(pod_object("kept", "n1", kept.ip))
            store.pods.append(pod_object("elsewhere", "n2", leaked.ip))   # another node's pod: does not count
        subprocess.run(["ip", "netns", "del", leaked.name], capture_output=True)   # gone without DEL
        c.pods.remove(leaked)
        lease = os.path.join(c.ipam_dir(0), "podnet-lab", leaked.ip)
        assert os.path.exists(lease)
        time.sleep(1.0)
        assert os.path.exists(lease), "a lease younger than --leak-grace was released"
        end = time.monotonic() + 10
        while os.path.exists(lease):
            assert time.monotonic() < end, "the leaked lease was never released"
            time.sleep(0.2)
        assert os.path.exists(os.path.join(c.ipam_dir(0), "podnet-lab", kept.ip)), "a live pod's lease was released"
    finally:
        c.down()
        api.stop()
