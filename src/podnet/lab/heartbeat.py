"""The lab's stand-in for kubelet's status loop (`python -m podnet.lab.heartbeat <k8s dir>`): every
HEARTBEAT seconds, for each node listed in <k8s dir>/heartbeat-nodes, renew its Lease and Ready
condition with that node's own credentials — so kube-controller-manager's nodelifecycle controller
keeps the lab's nodes Ready (and does not evict their pods).  Runs in the lab's fabric namespace
as a process of the lab; `podnet lab up` exits, this stays until `podnet lab down`.  Real kubelets
(issue 17's tier) do this themselves and the lab then starts none."""
from __future__ import annotations

import os
import sys
import time

from lightkube import Client, KubeConfig

from .kube import HEARTBEAT, beat, node_kubeconfig


def main(k8s_dir: str) -> int:
    clients: dict[str, Client] = {}
    while True:
        try:
            with open(os.path.join(k8s_dir, "heartbeat-nodes")) as f:
                nodes = [n.strip() for n in f if n.strip()]
        except FileNotFoundError:
            nodes = []
        for node in nodes:
            try:
                if node not in clients:
                    clients[node] = Client(KubeConfig.from_file(node_kubeconfig(k8s_dir, node)),
                                           field_manager="kubelet")
                beat(clients[node], node)
            except Exception as e:  # noqa: BLE001 - the API away or the node deleted: next beat
                print(f"heartbeat {node}: {type(e).__name__}: {e}", flush=True)
        time.sleep(HEARTBEAT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
