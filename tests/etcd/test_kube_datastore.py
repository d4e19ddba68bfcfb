"""`podnet agent --datastore kubernetes` on the virtual cluster: three node namespaces whose
agents take everything from Node objects — their podCIDRs (host-local inside them), the
peers' InternalIPs and published VTEP MACs — through the production client (lightkube).

The API server is a TEST DOUBLE (tests/helpers/fakekube.py: Node list/watch/get/create/
patch/delete over HTTP, as the API does) running in the fabric netns: no real API server can
run on this machine.  Nodes are registered the way kubelet and the controller manager would
(InternalIP, spec.podCIDRs) before the agents start."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from podnet.lab import ETCD_ADDR, FABRIC_NET, Cluster, free_port
from podnet.net import netns, probe
from tests.helpers.fakekube import ThreadingHTTPServer, node_object, serve
from tests.helpers.traffic import fetch, server


class FakeApi:
    def __init__(self) -> None:
        self.port = free_port()
        self.srv: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{ETCD_ADDR}:{self.port}"

    def start_in(self, lab: Cluster) -> None:
        """Listen in the lab's fabric netns (only this thread enters it, and only to bind)."""
        with netns.opened(f"/run/netns/{lab.fab}") as fd, netns.entered(fd):
            self.srv = serve(ETCD_ADDR, self.port)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        for i in range(len(lab.nodes)):
            self.add_node(i)

    def add_node(self, i: int) -> None:
        store = self.srv.RequestHandlerClass.store  # type: ignore[union-attr,attr-defined]
        with store.cond:
            obj = node_object(f"n{i + 1}", f"{FABRIC_NET}.{i + 1}", [f"10.244.{i}.0/24"])
            store.nodes[obj["metadata"]["name"]] = obj
            store._event("ADDED", obj)

    def delete_node(self, i: int) -> None:
        store = self.srv.RequestHandlerClass.store  # type: ignore[union-attr,attr-defined]
        with store.cond:
            store._event("DELETED", store.nodes.pop(f"n{i + 1}"))

    def annotations(self, i: int) -> dict[str, str]:
        store = self.srv.RequestHandlerClass.store  # type: ignore[union-attr,attr-defined]
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
