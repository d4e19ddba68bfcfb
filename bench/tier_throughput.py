"""The packet cost of ClusterNetworkPolicy's tiers (issue 33): TCP throughput pod → pod on one node
with no policy at all, with 200 NetworkPolicies, and with those 200 plus 50 ClusterNetworkPolicies.

A 3-node lab (vxlan, the Kubernetes datastore, podnet's agents with policy on) and the e2e world of
lab/netpol.py.  The server is x/a; the client a pod of another namespace on the same node.  What is
applied makes a connection walk every tier before it is allowed:
  - 25 Admin-tier policies (priorities 10…34) whose subject holds x/a, each with a Deny for pods
    that do not exist and a Pass for the client's namespace — the client is passed on, never decided;
  - 199 NetworkPolicies selecting x/a that allow nothing the client sends, and one that allows the
    client's namespace (the decision);
  - 25 Baseline-tier policies on x/a denying other namespaces' pods that do not exist (consulted
    only where no NetworkPolicy selects, so never for x/a: their cost is the chain that skips them).
Each round is paired — nothing, then the 200 NetworkPolicies, then the 50 on top — iperf3 2 s each;
the ratios are per round, the median of `--rounds` (≥ 5: the machine is shared and noisy).

    .venv/bin/python bench/tier_throughput.py [--rounds 5]      (root; iperf3 installed)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from podnet.lab import Cluster
from podnet.lab.netpol import NS_LABEL, PolicyLab


def network_policies(client_ns: str) -> list[dict[str, Any]]:
    out = [{"metadata": {"namespace": "x", "name": f"p{i:03d}"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": f"nobody-{i}"}}}],
                                  "ports": [{"port": 80 + i % 3}]}]}} for i in range(199)]
    out.append({"metadata": {"namespace": "x", "name": "p199"},
                "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NS_LABEL: client_ns}}}]}]}})
    return out


def cluster_policies(client_ns: str) -> list[dict[str, Any]]:
    subject = {"pods": {"namespaceSelector": {"matchLabels": {NS_LABEL: "x"}}, "podSelector": {"matchLabels": {"pod": "a"}}}}
    nobody = [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "nobody"}}}}]
    out = []
    for i in range(25):
        out.append({"metadata": {"name": f"admin-{i:02d}"},
                    "spec": {"tier": "Admin", "priority": 10 + i, "subject": subject, "ingress": [
                        {"name": "deny-nobody", "action": "Deny", "from": nobody},
                        {"name": "pass-client", "action": "Pass",
                         "from": [{"namespaces": {"matchLabels": {NS_LABEL: client_ns}}}]}]}})
        out.append({"metadata": {"name": f"baseline-{i:02d}"},
                    "spec": {"tier": "Baseline", "priority": 10 + i, "subject": subject, "ingress": [
                        {"name": "deny-nobody", "action": "Deny", "from": nobody}]}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    c = Cluster(3, "vxlan", datastore="kubernetes", network_policy=True)
    lab: PolicyLab | None = None
    rows = []
    try:
        c.up()
        lab = PolicyLab(c)
        lab.setup()
        lab.kube.apply_crds()
        nodes = lab.node_of()
        server = "x/a"
        client = next(k for k in lab.pods if nodes[k] == nodes[server] and not k.startswith("x/"))
        client_ns = client.split("/")[0]
        for r in range(a.rounds):
            bare = lab.iperf(server, client)
            for p in network_policies(client_ns):
                lab.apply(p)
            with_np = lab.iperf(server, client)
            for p in cluster_policies(client_ns):
                lab.apply_cluster_policy(p)
            with_tiers = lab.iperf(server, client)
            rows.append({"round": r, "none_gbps": round(bare, 2), "np200_gbps": round(with_np, 2),
                         "np200_cnp50_gbps": round(with_tiers, 2), "tiers_vs_none": round(with_tiers / bare, 3),
                         "tiers_vs_np200": round(with_tiers / with_np, 3)})
            print(json.dumps(rows[-1]), flush=True)
            for p in cluster_policies(client_ns):
                lab.delete_cluster_policy(p["metadata"]["name"])
            lab.delete_all()
    finally:
        if lab is not None:
            lab.stop()
        c.down()
    print(json.dumps({"rounds": len(rows),
                      "median_tiers_vs_none": statistics.median(r["tiers_vs_none"] for r in rows),
                      "median_tiers_vs_np200": statistics.median(r["tiers_vs_np200"] for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
