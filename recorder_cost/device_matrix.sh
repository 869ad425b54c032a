#!/bin/bash
# One device call's share of the overhead matrix on the GPU machine (docs/benchmarks.md),
# from the repo root with BCC's .debs in .bcc/ and FlexGen's wheel in .whl/:
#   bash recorder_cost/device_matrix.sh NAME WORKLOADS SETS [harness flags...]
# writes $OUT/NAME.json (the harness's results) and $OUT/NAME.log.
set -o pipefail
name=$1 workloads=$2 sets=$3
shift 3
source recorder_cost/device_env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
uptime
python3 -m iommu_trace.recorder_cost.harness --recorder /tmp/new/iommu-trace \
    --workloads "$workloads" --sets "$sets" --pairs 5 --warmup 1 --timeout 120 \
    --out "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.log" | grep -E '^(harness|\|)|Error|error'
