#!/usr/bin/env bash
# The whole test suite: style and types (ruff, mypy), then pytest over every tier the machine supports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
