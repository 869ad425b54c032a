#!/bin/bash
# mypy over the package. The repository root installs as iommu_trace
# (package-dir), which mypy cannot see through the editable finder, so it
# checks a view: a directory whose iommu_trace entry links to the root.
set -euo pipefail
cd "$(dirname "$0")/.."
view=$(mktemp -d)
trap 'rm -rf "$view"' EXIT
ln -s "$PWD" "$view/iommu_trace"
MYPYPATH=$view exec .venv/bin/mypy --config-file pyproject.toml \
    --cache-dir .venv/.mypy_cache -p iommu_trace "$@"
