#!/usr/bin/env bash
# The whole test suite (unit, kernel, differential, runtime tiers) via pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
