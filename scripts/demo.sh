#!/usr/bin/env bash
# The main job: `podnet demo`, a virtual cluster of node namespaces (etcd or, with --datastore
# kubernetes, a real Kubernetes control plane; an agent per node; pods on every node; all pairs checked).
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" kubernetes "*|*"--datastore=kubernetes"*|*" --kubelet "*) export PODNET_WITH_K8S=1 ;;
esac
bash scripts/setup.sh
exec .venv/bin/podnet demo "$@"
