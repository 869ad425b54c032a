#!/bin/bash
# The GPU-machine run behind traces/kvsplit/h200-* (docs/kvsplit.md): profile, eager sweep,
# one recording (bench/kvsplit_graphs.sh runs the CUDA-graph sweep).
# From the repo root (BCC's .debs in .bcc/ for the recording); results go to $OUT.
exec > >(tee -a "$OUT/log.txt") 2>&1
source bench/device_cli.sh
step env
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader
python3 -c 'import torch, scipy; print("torch", torch.__version__, "scipy", scipy.__version__)'
step profile
$IT kvsplit profile --batch 1,8 --context 1024,4096 -o "$OUT/profile.json" || echo FAILED profile
[ "${KVSPLIT_PLANS:-1}" = 1 ] && step plans
[ "${KVSPLIT_PLANS:-1}" = 1 ] && for b in 1 8; do for n in 1024 4096; do
    $IT kvsplit plan --profile "$OUT/profile.json" --batch $b --context $n
done; done
step sweep
$IT kvsplit run --no-graphs --profile "$OUT/profile.json" --batch 1,8 --context 1024,4096 --iters 7 \
    -o "$OUT/results.json" --table "$OUT/results.md" || echo FAILED sweep
if [ -d .bcc ] && [ "${KVSPLIT_RECORD:-1}" = 1 ]; then
    step record
    source .bcc/unpack-bcc.sh .bcc
    timeout 90 $IT record -o "$OUT/kvsplit.iot" --probe cudaMemcpyAsync -- \
        $IT kvsplit run --no-graphs --profile "$OUT/profile.json" --batch 8 --context 1024 --splits 0,100 \
        --iters 2 --layers-run 2 -o "$OUT/recorded.json" || echo FAILED record
    $IT info "$OUT/kvsplit.iot" | sed -n '1,40p'
fi
step end
