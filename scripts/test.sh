#!/usr/bin/env bash
# The whole test suite: style and types (ruff, mypy), then pytest over every tier the machine supports.
# The Kubernetes tiers need the components built from source (cold: ~10 min once, then cached).
set -euo pipefail
cd "$(dirname "$0")/.."
PODNET_WITH_K8S=1 bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
