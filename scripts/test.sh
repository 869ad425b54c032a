#!/bin/bash
# The test suite, as CI runs it: installs what is missing, lints, type-checks, then pytest.
# Root is needed: the tests record real BPF events and boot the IOMMU lab VM.
#   sudo scripts/test.sh            # everything
#   sudo scripts/test.sh -m 'not lab'   # skip the lab VM boots (~5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
scripts/typecheck.sh
exec .venv/bin/python -m pytest -q "$@"
