"""Make a large trace by replicating a recorded one, for the readers' benchmarks.

    python -m iommu_trace.recorder_cost.make_big_trace traces/lab/dd64k-strict.iot \
        -n 10000000 -o /tmp/big10m.iot [--v1]

Copy i of the source's events is shifted by i times the source's span, so
times stay ordered and every map still meets its unmap; metadata is the
source's, with counts and the end time scaled. `--v1` writes format version 1
(stacks inline in every row, pyarrow's default layout), to compare sizes and
reader times against. The big files are not committed.
"""

from __future__ import annotations

import argparse
import json
import math

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..tracefile.reader import load
from ..tracefile.schema import EVENT, ROW_GROUP_ROWS, STACK, complete
from ..tracefile.writer import parquet_writer


def _scaled_meta(meta: dict, copies: int, span: int) -> dict:
    m = dict(meta)
    m["counts"] = {k: v * copies for k, v in (meta.get("counts") or {}).items()}
    m["drops"] = {k: v * copies for k, v in (meta.get("drops") or {}).items()}
    if m.get("end_mono_ns") is not None:
        m["end_mono_ns"] = m["end_mono_ns"] + span * (copies - 1)
    m["workload"] = {**(meta.get("workload") or {}), "replicated_from": meta.get("command"),
                     "copies": copies}  # fmt: skip
    return m


def make(source: str, n: int, out: str, v1: bool = False) -> int:
    t = load(source)
    ev = t.read()
    lo, hi = pc.min_max(ev.column("ts_ns")).values()
    start = t.metadata.start_mono_ns or lo.as_py()
    end = t.metadata.end_mono_ns or hi.as_py()
    span = max(end, hi.as_py()) - min(start, lo.as_py()) + 1
    copies = math.ceil(n / ev.num_rows)
    meta = _scaled_meta(t.meta, copies, span)  # the JSON written back, scaled: raw on purpose
    meta["events_written"] = n
    if v1:
        ev = t.table.drop_columns(["kstack_id", "ustack_id"])
        ev = ev.cast(
            pa.schema(
                [
                    pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                    for f in ev.schema
                ]
            )
        )
        meta["version"] = 1
        schema = ev.schema.with_metadata(
            {b"iommu_trace": json.dumps({**meta, "finalized": True}, default=str).encode()}
        )
        rg = None  # pyarrow's default, as the v1 writer's trace in the issue
    else:
        ev = complete(ev, EVENT)
        rg = ROW_GROUP_ROWS
    left = n
    ts = ev.column("ts_ns")
    parts = []
    writer = pq.ParquetWriter(out, schema, compression="zstd") if v1 else parquet_writer(out, meta)
    with writer as w:
        for i in range(copies):
            part = ev.slice(0, min(left, ev.num_rows))
            shifted = pc.add(ts.slice(0, part.num_rows), pa.scalar(i * span, pa.int64()))
            parts.append(part.set_column(part.schema.get_field_index("ts_ns"), "ts_ns", shifted))
            left -= part.num_rows
            if sum(p.num_rows for p in parts) >= (rg or 1 << 20) or left == 0:
                w.write_table(pa.concat_tables(parts), row_group_size=rg)
                parts = []
        if not v1:
            w.write_table(complete(t.stack_rows(), STACK), row_group_size=rg)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("-n", "--events", type=int, default=1_000_000)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--v1", action="store_true", help="write format version 1")
    a = ap.parse_args()
    make(a.source, a.events, a.output, a.v1)
    print(f"{a.output}: {a.events} events")


if __name__ == "__main__":
    main()
