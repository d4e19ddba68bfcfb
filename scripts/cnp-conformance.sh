#!/usr/bin/env bash
# SIG Network's ClusterNetworkPolicy conformance suite (network-policy-api v0.3.1, ClusterNetworkPolicy
# profile) against podnet on a 2-node kubelet lab; the suite writes its report to
#   conformance/reports/v0.3.1/podnet.yaml   (and its whole log beside it, podnet.log)
# ~1.5 min to build once (scripts/cnp-conformance-build.sh), then the lab and the run.  As root.
set -euo pipefail
cd "$(dirname "$0")/.."
PODNET_WITH_K8S=1 bash scripts/setup.sh
exec .venv/bin/python -m podnet.lab.cnpconformance_run "$@"
