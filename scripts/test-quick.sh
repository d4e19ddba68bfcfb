#!/usr/bin/env bash
# The developers' inner loop (under 3 minutes on the project's 2-core machine): style and types, the
# unit tier, and the reliability checks that need no kernel namespaces or cluster — config
# regressions, hypothesis properties, the CLI's face.  The whole suite is scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q tests/unit tests/reliability/test_config_regressions.py \
  tests/reliability/test_properties.py tests/reliability/test_cli_face.py "$@"
