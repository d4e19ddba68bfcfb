#!/usr/bin/env bash
# The main job: a virtual node with the podnet agent and pods on a podnet bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/podnet demo "$@"
