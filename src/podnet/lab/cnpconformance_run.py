"""scripts/cnp-conformance.sh: build, bring up a 2-node kubelet lab with podnet and the agnhost image,
run the ClusterNetworkPolicy conformance profile, keep its report, take the lab down."""
from __future__ import annotations

import sys

from .. import __version__
from .cnpconformance import SUITE_VERSION, agnhost_image, build, run_suite
from .kubecluster import SOURCE, KubeletCluster


def main() -> int:
    out = SOURCE / "conformance" / "reports" / SUITE_VERSION
    out.mkdir(parents=True, exist_ok=True)
    built = build()
    name, tar = agnhost_image(built)
    lab = KubeletCluster(2)
    lab.image_tars[name] = str(tar)
    try:
        lab.up()
        print(f"lab up: {len(lab.nodes)} nodes, podnet by its DaemonSet; running the suite (log: {out / 'podnet.log'})",
              flush=True)
        rc = run_suite(lab, built, out / "podnet.yaml", out / "podnet.log", __version__)
    finally:
        lab.down()
    print(f"conformance suite exit {rc}; report {out / 'podnet.yaml'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
