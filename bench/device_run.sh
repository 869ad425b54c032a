#!/bin/bash
# The GPU-machine run behind traces/bench/ and traces/flexgen/ (docs/overhead.md).
# From the repo root, with BCC's .debs in .bcc/ and flexgen's wheel in .whl/; results go to $OUT.
exec > >(tee -a "$OUT/log.txt") 2>&1
source .bcc/unpack-bcc.sh .bcc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    || echo FAILED pip
source bench/device_cli.sh
step env
nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv,noheader
python3 -c 'import cupy, pyarrow, pandas, click, flexgen; print("cupy", cupy.__version__)'
B="bench memcpy --sizes 6:24:2 --patterns single,random-all --loops 6 --warmup 1 -q"
step bench-a  # results found beside the trace: bench-a.iot.bench.csv
timeout 150 $IT record -o "$OUT/bench-a.iot" -- $IT $B || echo FAILED bench-a
step bench-b  # the same again, results named explicitly
timeout 150 $IT record -o "$OUT/bench-b.iot" -- $IT $B --out "$OUT/bench-b.iot.bench.csv" \
    || echo FAILED bench-b
step flexgen  # per-copy runtime probes on: FlexGen's copies are few and large
timeout 200 $IT record -o "$OUT/flexgen.iot" --no-probe syscall --probe cudaMemcpyAsync,cudaMemcpy \
    -- python3 examples/flexgen_run.py --model facebook/opt-1.3b --percent 100 0 0 100 100 0 \
    --prompt-len 512 --gen-len 32 --gpu-batch-size 8 || echo FAILED flexgen
for t in "$OUT"/*.iot; do step info "$t"; $IT info "$t" | sed -n '1,12p;/dma_map /,/dma_unmap_sg/p;/cuMemHostAlloc/p;/cudaMemcpy/p'; done
ls -la "$OUT"
step end
