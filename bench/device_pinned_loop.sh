#!/bin/bash
# The GPU-machine run behind traces/h200/ (docs/trace-format.md, "at least"):
# 200 pinned 4 MiB buffers allocated, copied once and freed, recorded through
# raw tracepoints and again through the tracefs records, plus the machine's BTF.
# From the repo root; BCC's .debs in $BCC (default .bcc; "none": BCC is installed);
# results go to $OUT.
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
BCC=${BCC:-.bcc}
[ "$BCC" = none ] || source "$BCC/unpack-bcc.sh" "$BCC"
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/iommu_trace
export PYTHONPATH=/tmp/pkg:${PYTHONPATH:-}
mkdir -p /tmp/bin && printf '%s\n' '#!/bin/sh' \
    "exec python3 -W ignore::SyntaxWarning -c 'from iommu_trace.cli import main; main()' \"\$@\"" \
    > /tmp/bin/iommu-trace && chmod +x /tmp/bin/iommu-trace
export PATH=/tmp/bin:$PATH
IT=iommu-trace
W="python3 examples/pinned_loop.py --rounds 200 --mib 4"
step() { echo; echo "=== $* ($(date +%T))"; }
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
