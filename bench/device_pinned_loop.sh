#!/bin/bash
# The GPU-machine run behind traces/h200/ (docs/trace-format.md, "at least"):
# 200 pinned 4 MiB buffers allocated, copied once and freed, recorded through
# raw tracepoints and again through the tracefs records, plus the machine's BTF.
# From the repo root; BCC's .debs in $BCC (default .bcc; "none": BCC is installed);
# results go to $OUT.
exec > >(tee -a "$OUT/log.txt") 2>&1
BCC=${BCC:-.bcc}
[ "$BCC" = none ] || source "$BCC/unpack-bcc.sh" "$BCC"
source bench/device_cli.sh
W="python3 examples/pinned_loop.py --rounds 200 --mib 4"
step env
uname -r
nvidia-smi --query-gpu=name,driver_version,pci.bus_id --format=csv,noheader
ls /sys/kernel/btf | tr '\n' ' '; echo
step probes
$IT probes -v -c python3 > "$OUT/probes.txt" || echo FAILED probes
step raw-tracepoints
timeout 60 $IT record --buffer-pages 8192 -o "$OUT/h200-pinned-loop.iot" -- $W || echo FAILED raw
step tracefs-records
timeout 60 $IT record --no-raw-tracepoints --buffer-pages 8192 -o "$OUT/h200-pinned-loop-records.iot" \
    -- $W || echo FAILED records
for t in "$OUT"/*.iot; do
    step info "$t"
    $IT info "$t" | sed -n '1,12p;/^dma_/p;/^withheld/p;/^note/p'
    $IT calls "$t" | head -20
done
step btf
python3 scripts/btf-fixture.py /sys/kernel/btf/vmlinux "$OUT/$(uname -r).btf" || echo FAILED btf
ls -la "$OUT"
step end
