#!/usr/bin/env python3
"""Pseudonymize what earlier recorders left raw in committed traces (idempotent).

    .venv/bin/python scripts/redact_traces.py traces tests/fixtures/sysfs/traces

Every metadata string (dmesg lines, kernel command lines) and every sidecar
`.workload.json` gets address-like hex replaced by `addr#N`; iova_alloc's `ret`
(an IOVA page number) is pseudonymized as `record` does now, numbered on its own
(the raw IOVAs it would join are gone). Events, their order and every other
value stay as they were.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iommu_trace.tracefile.schema import META_KEY
from iommu_trace.tracer.addresses import Pseudonymizer, TextRedactor, raw_address_columns


def redact_trace(path: Path) -> bool:
    pf = pq.ParquetFile(path)
    meta = json.loads(pf.schema_arrow.metadata[META_KEY])
    table = pf.read()
    new_meta = TextRedactor().tree(meta)
    if "iova" in raw_address_columns(table, meta):
        names = [p["name"] for p in meta["probes"] if p.get("op") == "iova_alloc"]
        sel = pc.fill_null(pc.is_in(table["probe"], pa.array(names)), False)
        ret = table["ret"].combine_chunks()
        mask = pc.and_(sel, pc.is_valid(ret)).to_numpy(zero_copy_only=False)
        v = ret.fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
        v[mask] = Pseudonymizer().pfn("iova", v[mask])
        fixed = pa.array(v.view(np.int64), pa.int64(), mask=~pc.is_valid(ret).to_numpy(False))
        table = table.set_column(table.schema.get_field_index("ret"), "ret", fixed)
    elif new_meta == meta:
        return False
    table = table.replace_schema_metadata({META_KEY: json.dumps(new_meta).encode()})
    pq.write_table(table, path, compression="zstd", row_group_size=65536)
    return True


def redact_json(path: Path) -> bool:
    text = path.read_text()
    doc = json.loads(text)
    new = TextRedactor().tree(doc)
    if new == doc:
        return False
    path.write_text(json.dumps(new, indent=1) + ("\n" if text.endswith("\n") else ""))
    return True


def main(roots: list[str]) -> int:
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            changed = (
                redact_trace(p)
                if p.suffix == ".iot"
                else redact_json(p)
                if p.name.endswith(".workload.json")
                else False
            )
            if changed:
                print(f"redacted {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["traces"]))
