"""A PolicyLab on a cluster for a test module, driving it through a case's steps and checking each probe's matrix against the
reference model (tests/helpers/netpol_model.py): shared by the NetworkPolicy cluster tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from podnet.lab import Cluster
from podnet.lab.netpol import PORTS, PolicyLab, render_matrix
from tests.helpers.netpol_cases import resolve_cidrs
from tests.helpers.netpol_model import Model, MPod


def expected(lab: PolicyLab, port: int, proto: str) -> dict[tuple[str, str], bool]:
    pods = [MPod(k.split("/")[0], k.split("/")[1], p.ip, dict(lab.pod_labels[k]), {n: (pr, num) for n, pr, num in PORTS})
            for k, p in lab.pods.items()]
    return Model(pods, lab.ns_labels, list(lab.policies.values())).matrix(port, proto)


def check_matrix(lab: PolicyLab, port: int, proto: str, what: str) -> None:
    got, want = lab.matrix(port, proto), expected(lab, port, proto)
    bad = [cell for cell in want if got.get(cell) != want[cell]]
    assert not bad, (f"{what}, {port}/{proto}: {len(bad)} cells differ from the model ([ ] = wrong; '.' open, "
                     f"'X' closed)\n{render_matrix(got, want)}\n"
                     + "\n".join(f"  n{lab.pods[s].node + 1} {s} → n{lab.pods[d].node + 1} {d}" for s, d in bad[:10]))


def run_steps(lab: PolicyLab, case: str, steps: list[tuple[Any, ...]]) -> None:
    for i, step in enumerate(steps):
        kind = step[0]
        if kind in ("create", "update"):
            lab.apply(resolve_cidrs(step[1], lab.ip_of()))
        elif kind == "delete":
            lab.delete(step[1], step[2])
        elif kind == "delete-all":
            lab.delete_all()
        elif kind == "label-pod":
            lab.label_pod(step[1], step[2], step[3])
        elif kind == "label-ns":
            lab.label_namespace(step[1], step[2])
        elif kind == "probe":
            check_matrix(lab, step[1], step[2], f"{case}, step {i}")
        else:
            raise AssertionError(step)


@contextmanager
def policy_lab(c: Cluster) -> Iterator[PolicyLab]:
    """`c` up with the NetworkPolicy lab's namespaces and pods; everything down after."""
    pl: PolicyLab | None = None
    try:
        c.up()
        pl = PolicyLab(c)
        pl.setup()
        yield pl
    finally:
        if pl is not None:
            pl.stop()
        c.down()
