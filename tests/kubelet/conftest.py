"""The kubelet tier's shared lab: 2 real nodes (kubelet + containerd + kube-proxy), podnet by its
DaemonSet — one lab for the whole package (test_attachments.py, then test_real_nodes.py, whose last
tests roll the DaemonSet, kill the agent and drain a node away)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

NODES = 2


@pytest.fixture(scope="package")
def klab() -> Iterator[object]:
    from podnet.lab.kubecluster import KubeletCluster
    lab = KubeletCluster(NODES)
    try:
        lab.up(install=False)
        # before podnet: registered, NotReady because the runtime reports no network
        lab.before = {n["metadata"]["name"]: lab.ready(n) for n in lab.get("nodes")["items"]}  # type: ignore[attr-defined]
        lab.install_podnet()
        yield lab
    finally:
        lab.down()
