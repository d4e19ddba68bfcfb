"""scripts/cnp-conformance.sh: build, bring up a 2-node kubelet lab with podnet and the agnhost image,
run the ClusterNetworkPolicy conformance profile, keep its reports, take the lab down.

    scripts/cnp-conformance.sh [--only upstream|skip-sctp]

By default the suite as published (report podnet.yaml) and, on a kernel without SCTP, the suite
with its SCTP tests and probes skipped (podnet-skip-sctp.yaml); the same lab for both."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from .cnpconformance import NO_SCTP, SUITE_VERSION, agnhost_image, build, kernel_has_sctp, run_suite
from .kubecluster import SOURCE, KubeletCluster


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/cnp-conformance.sh")
    ap.add_argument("--only", choices=("upstream", "skip-sctp"), help="run one of the two suites")
    a = ap.parse_args()
    runs = [a.only] if a.only else ["upstream"] + ([] if kernel_has_sctp() else ["skip-sctp"])
    out = SOURCE / "conformance" / "reports" / SUITE_VERSION
    out.mkdir(parents=True, exist_ok=True)
    built = build()
    name, tar = agnhost_image(built)
    lab = KubeletCluster(2)
    lab.image_tars[name] = str(tar)
    rcs = []
    try:
        lab.up()
        for run in runs:
            stem = "podnet" if run == "upstream" else "podnet-skip-sctp"
            print(f"lab up: {len(lab.nodes)} nodes, podnet by its DaemonSet; running the {run} suite "
                  f"(log: {out / (stem + '.log')})", flush=True)
            rc = run_suite(lab, built, out / f"{stem}.yaml", out / f"{stem}.log", __version__,
                           skip_sctp=NO_SCTP if run == "skip-sctp" else "")
            print(f"{run} suite exit {rc}; report {out / (stem + '.yaml')}", flush=True)
            rcs.append(rc)
    finally:
        lab.down()
    return max(rcs, default=1)


if __name__ == "__main__":
    sys.exit(main())
