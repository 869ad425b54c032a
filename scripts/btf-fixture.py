#!/usr/bin/env python3
"""Cut the types iommu-trace's probes read out of a kernel's BTF (a small test fixture).

    .venv/bin/python scripts/btf-fixture.py /sys/kernel/btf/vmlinux tests/fixtures/btf/6.18.44.btf

The input may be /sys/kernel/btf/vmlinux or a .BTF section taken from a
distribution kernel (objcopy -O binary --only-section=.BTF vmlinux out).
"""

import sys
from pathlib import Path

from iommu_trace.probes.btf import BTF, TYPEDEF

src, dst = sys.argv[1], sys.argv[2]
btf = BTF.load(src)
types = (btf.types[i] for i in range(1, len(btf)))
events = [t.name for t in types if t.kind == TYPEDEF and t.name.startswith("btf_trace_")]
wanted = [e for e in events if e.startswith(("btf_trace_dma_", "btf_trace_map", "btf_trace_unmap"))]
blob = btf.subset(["device", "scatterlist", "sg_table", "page"], wanted)
Path(dst).write_bytes(blob)
print(f"{dst}: {len(blob)} bytes, {len(wanted)} tracepoint prototypes")
