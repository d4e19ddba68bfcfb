"""`podnet demo --datastore kubernetes --policy`: NetworkPolicy on a virtual cluster with a real
control plane.  Namespaces x, y, z with pods a, b, c spread over the nodes; a sequence of policies
applied through the API — none, deny-all, then allow rules — and after each, once every node's
agent has programmed it, the TCP/80 matrix probed for real.  Each matrix is compared cell by cell
with the reference model of the semantics (tests/helpers/netpol_model.py, written from the API
documentation, separate from the enforcement code): PASS only if every cell of every matrix matches.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

X_A = {"matchLabels": {"pod": "a"}}


def _policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


# (what the step says, what it does: ("apply", policy) | ("label-pod", ns, name, labels) | ("delete-all",))
STEPS: list[tuple[str, list[tuple[Any, ...]]]] = [
    ("no policies: every pod reaches every pod", []),
    ("deny-all in namespace x (ingress and egress): x's pods are cut off both ways",
     [("apply", _policy("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))]),
    ("allow x/a ← namespace y on TCP 80 (replies flow back; x/a still opens no connection of its own)",
     [("apply", _policy("x", "a-from-y", {"podSelector": X_A, "policyTypes": ["Ingress"], "ingress": [{
         "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
         "ports": [{"port": 80, "protocol": "TCP"}]}]}))]),
    ("allow egress from x/b to pods labelled role=db anywhere; z/c becomes role=db",
     [("apply", _policy("x", "b-to-db", {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"],
                                         "egress": [{"to": [{"namespaceSelector": {},
                                                             "podSelector": {"matchLabels": {"role": "db"}}}]}]})),
      ("label-pod", "z", "c", {"pod": "c", "role": "db"})]),
    ("all policies deleted: open again", [("delete-all",), ("label-pod", "z", "c", {"pod": "c"})]),
]


def load_model() -> ModuleType:
    """The reference model from the checkout (it lives with the tests, apart from the engine)."""
    path = Path(__file__).resolve().parents[2] / "tests" / "helpers" / "netpol_model.py"
    spec = importlib.util.spec_from_file_location("podnet_reference_netpol_model", path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"the reference model {path} (run the demo from a podnet checkout)")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run_policy_demo(nodes: int = 3, backend: str = "vxlan", keep: bool = False) -> int:
    from .lab import Cluster
    from .lab.netpol import PORTS, PolicyLab, render_matrix
    t0 = time.perf_counter()
    try:
        model = load_model()
    except FileNotFoundError as e:
        print(f"podnet demo --policy: {e}", file=sys.stderr)
        return 2
    lab = Cluster(nodes, backend, datastore="kubernetes", network_policy=True)
    pl: PolicyLab | None = None
    ok = True
    try:
        lab.up()
        pl = PolicyLab(lab)
        pl.setup()
        print(f"podnet demo --policy: {nodes} nodes ({backend}), Kubernetes {lab.cp.server}, "
              f"NetworkPolicy enforced by each node's agent (nftables table inet podnet_policy); "
              f"ready in {time.perf_counter() - t0:.1f}s")
        print("pods (namespace/name, node, address):")
        for key, pod in pl.pods.items():
            print(f"  {key:<4} n{pod.node + 1}  {pod.ip}")
        print("matrices: rows are clients, columns servers, TCP/80; '.' connects, 'X' is blocked; "
              "a cell in [ ] differs from the model")
        for n, (title, actions) in enumerate(STEPS, 1):
            took = 0.0
            for act in actions:
                if act[0] == "apply":
                    took = max(took, pl.apply(act[1]))
                elif act[0] == "label-pod":
                    took = max(took, pl.label_pod(act[1], act[2], act[3]))
                elif act[0] == "delete-all":
                    pl.delete_all()
                    took = max(took, pl.last_latency)
            got = pl.matrix(80, "TCP")
            pods = [model.MPod(k.split("/")[0], k.split("/")[1], p.ip, dict(pl.pod_labels[k]),
                               {name: (proto, num) for name, proto, num in PORTS}) for k, p in pl.pods.items()]
            want = model.Model(pods, pl.ns_labels, list(pl.policies.values())).matrix(80, "TCP")
            bad = sum(1 for cell in want if got.get(cell) != want[cell])
            ok &= bad == 0
            programmed = f"; programmed on every node {took * 1000:.0f} ms after the API's answer" if actions else ""
            print(f"\n{n}. {title}{programmed}")
            print("\n".join("   " + line for line in render_matrix(got, want).splitlines()))
            print(f"   {'matches the model' if not bad else f'{bad} cells differ from the model'} "
                  f"({sum(got.values())} of {len(got)} open)")
    except Exception as e:  # noqa: BLE001 - the report says what failed; teardown still runs
        print(f"podnet demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        ok = False
    finally:
        if pl is not None:
            pl.stop()
        if not keep:
            lab.down()
    print(f"\npodnet demo --policy: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t0:.1f}s in all)")
    return 0 if ok else 1
