# Sourced by the GPU-machine scripts, from the repo root: this checkout importable as
# iommu_trace (plus /tmp/site, where carried wheels go), an `iommu-trace` command on
# PATH, and `step` to mark each part of the log. The command is a wrapper, not
# `python -m iommu_trace.cli`, so the entry point is the one users run.
export PYTHONUNBUFFERED=1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/iommu_trace
export PYTHONPATH=/tmp/pkg:/tmp/site:${PYTHONPATH:-}
mkdir -p /tmp/bin && printf '%s\n' '#!/bin/sh' \
    "exec python3 -W ignore::SyntaxWarning -c 'from iommu_trace.cli import main; main()' \"\$@\"" \
    > /tmp/bin/iommu-trace && chmod +x /tmp/bin/iommu-trace
export PATH=/tmp/bin:$PATH
IT=iommu-trace
step() { echo; echo "=== $* ($(date +%T))"; }
