#!/usr/bin/env bash
# The main job: `podnet demo`, a virtual cluster of node namespaces (etcd, an agent per node, pods on every node, all pairs checked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/podnet demo "$@"
