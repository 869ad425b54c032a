#!/bin/bash
# The GPU-machine run behind docs/kvsplit.md's "CUDA graphs" (about 90 s on one H200):
# one profile with both CPU issue floors (eager and graph replay), the batch 1/8 x context
# 1024/4096 sweep as CUDA graph replays, batch 1 context 1024 eager beside it on the same
# profile, and the runtime's graph tests. From the repo root; results go to $OUT:
# profile.json, results.json/.md/.svg (graphs), results-eager.json/.md, log.txt.
exec > >(tee -a "$OUT/log.txt") 2>&1
source bench/device_cli.sh
ITERS=${KVSPLIT_ITERS:-7}
step env
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader
python3 -c 'import torch, scipy; print("torch", torch.__version__, "scipy", scipy.__version__)'
step profile
timeout 30 $IT kvsplit profile --batch 1,8 --context 1024,4096 -o "$OUT/profile.json" \
    || echo FAILED profile
step sweep-graphs
timeout 85 $IT kvsplit run --graphs --profile "$OUT/profile.json" --batch 1,8 \
    --context 1024,4096 --iters "$ITERS" -o "$OUT/results.json" --table "$OUT/results.md" \
    --plot "$OUT/results.svg" || echo FAILED sweep-graphs
step sweep-eager
timeout 25 $IT kvsplit run --no-graphs --profile "$OUT/profile.json" --batch 1 --context 1024 \
    --iters "$ITERS" -o "$OUT/results-eager.json" --table "$OUT/results-eager.md" \
    || echo FAILED sweep-eager
step tests
timeout 25 python3 -m pytest -q -rs -p no:cacheprovider tests/test_kvsplit_runtime.py \
    -k graph_replay || echo FAILED tests
step summary
grep -h "CPU issue\|LP split" "$OUT/log.txt" | grep -v "^+"
step end
