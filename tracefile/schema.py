"""Trace format v2: one Parquet file of events and the stacks they refer to.

Rows are either events (`record` = "event") or stacks (`record` = "stack",
frames stored once, referred to by the events' `kstack_id`/`ustack_id`), or,
in a counting trace (`record --count`, metadata `mode` = "count"), count rows
(`record` = "count": events a probe counted in the kernel per device, size
bucket and second, with no per-event row). Events come first, sorted by time;
the stacks, then the count rows, follow in row groups of their own. Metadata
is in the key-value footer. While recording, the same path holds an Arrow IPC
stream (the journal) of the same schema, readable up to its last flushed
batch if the recorder dies. See docs/trace-format.md.

Version 1 (no `record`, stacks as list<string> in every event row) is still
read; `iommu-trace upgrade` rewrites it as version 2.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FORMAT = "iommu-trace"
VERSION = 2
META_KEY = b"iommu_trace"

# Events per Parquet row group: a reader holds one group of the columns it
# reads at a time (a few MB), and column statistics per group stay useful.
ROW_GROUP_ROWS = 262_144

# Low-cardinality strings: one dictionary per row group, an int32 per row.
_DICT = pa.dictionary(pa.int32(), pa.string())

# column -> (arrow type, meaning); the meaning is stored in the file too.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "record": (
        _DICT,
        "event, stack (a row of the stacks table: stack_id and frames), or count "
        "(a counting trace's row: probe, group, op, dev, size_bucket, second, count, bytes)",
    ),
    "ts_ns": (pa.int64(), "CLOCK_MONOTONIC ns; for calls, the entry time"),
    "dur_ns": (pa.int64(), "return minus entry for calls and syscalls; null for instants"),
    "cpu": (pa.int32(), "CPU the event ran on"),
    "pid": (pa.int32(), "process (tgid) current when the event fired"),
    "tid": (pa.int32(), "thread current when the event fired"),
    "comm": (_DICT, "command name of that thread"),
    "probe": (_DICT, "catalog probe name (iommu-trace probes)"),
    "group": (
        _DICT,
        "dma|iommu-map|iotlb-flush|iova|nvidia|cuda-driver|cuda-runtime|syscall|user",
    ),
    "op": (_DICT, "map|unmap|alloc|free|flush|iova_alloc|iova_free|call|ioctl"),
    "dev": (_DICT, "device name (e.g. 0000:01:00.0), where the probe knows it"),
    "addr": (pa.int64(), "CPU/physical address (pseudonymized unless --keep-addresses)"),
    "iova": (pa.int64(), "DMA address / IOVA (pseudonymized unless --keep-addresses)"),
    "size": (pa.int64(), "bytes"),
    "dir": (pa.int64(), "DMA direction: 0 bidirectional, 1 to device, 2 from device, 3 none"),
    "count": (
        pa.int64(),
        "entries/pages/fd, per probe (see the probe's doc); count rows: events counted",
    ),
    "flags": (pa.int64(), "attrs/flags argument"),
    "cmd": (pa.int64(), "ioctl request"),
    "ret": (pa.int64(), "return value (signed)"),
    "nents": (pa.int64(), "scatter-list entries handed to an sg call (count: the mapped ones)"),
    "at_least": (
        pa.bool_(),
        "true: size/count are lower bounds (a scatter-list walk hit its bound); "
        "null where the probe walks no list; count rows: bytes is a lower bound",
    ),
    "kstack_id": (pa.int32(), "kernel stack: stack_id of a stack row; null if none"),
    "ustack_id": (pa.int32(), "user stack: stack_id of a stack row; null if none"),
    "stack_id": (pa.int32(), "stack rows: the id events refer to"),
    "frames": (pa.list_(pa.string()), "stack rows: innermost first, 'function [object]'"),
    "second": (
        pa.int32(),
        "count rows: whole seconds since the counting began (metadata count.origin_mono_ns)",
    ),
    "size_bucket": (
        pa.int32(),
        "count rows: the smallest k with size <= 2**k (sizes 0 and 1: 0); "
        "null where the probe has no size",
    ),
    "bytes": (pa.int64(), "count rows: the sizes of the events counted, summed"),
}

SCHEMA = pa.schema([pa.field(n, t, nullable=True) for n, (t, _) in COLUMNS.items()])
# The journal's batches before each frame became an IPC stream of its own: the same
# columns with plain strings, because one record batch message cannot carry its
# dictionaries. Journals written so still read (tracefile/journal.py).
JOURNAL_SCHEMA = pa.schema(
    [pa.field(f.name, pa.string() if f.type == _DICT else f.type) for f in SCHEMA]
)
STACK_COLUMNS = ("stack_id", "frames")
# Columns of count rows only (null elsewhere). Traces from before counting lack them:
# a reader takes them as null, and an event table never carries them.
COUNT_ONLY = ("second", "size_bucket", "bytes")
# A count row: what the kernel counted it under (the key) and what it summed.
COUNT_COLUMNS = ("probe", "group", "op", "dev", "size_bucket", "second", "count", "bytes",
                 "at_least")  # fmt: skip
EVENT_COLUMNS = tuple(
    n for n in COLUMNS if n not in STACK_COLUMNS and n not in COUNT_ONLY and n != "record"
)
STRING_COLUMNS = tuple(n for n, (t, _) in COLUMNS.items() if t == _DICT)
ADDRESS_COLUMNS = ("addr", "iova")
EVENT, STACK, COUNT = "event", "stack", "count"

# Version 1: the same events with plain strings and the stacks inline, no stack rows.
_V1_STRINGS = ("comm", "probe", "group", "op", "dev")
V1_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    **{n: (pa.string() if n in _V1_STRINGS else t, d) for n, (t, d) in COLUMNS.items()
       if n in EVENT_COLUMNS and n not in ("kstack_id", "ustack_id")},
    "kstack": (pa.list_(pa.string()), "kernel stack, innermost first, 'function [module]'"),
    "ustack": (pa.list_(pa.string()), "user stack, innermost first, 'function [object]'"),
}  # fmt: skip
V1_SCHEMA = pa.schema([pa.field(n, t, nullable=True) for n, (t, _) in V1_COLUMNS.items()])


def column_docs() -> dict[str, str]:
    return {n: doc for n, (_, doc) in COLUMNS.items()}


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def _rows(kind: str, cols: dict[str, pa.Array], n: int) -> pa.RecordBatch:
    """Rows of one kind: the given columns (cast to the schema), every other one null."""
    arrays = []
    for f in SCHEMA:
        if f.name == "record":
            arrays.append(_constant(kind, n))
        elif f.name in cols:
            arrays.append(cols[f.name].cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.record_batch(arrays, schema=SCHEMA)


def event_batch(cols: dict[str, pa.Array]) -> pa.RecordBatch:
    """Event rows: the given event columns, the stack and count columns null."""
    return _rows(EVENT, cols, len(cols["ts_ns"]))


def count_batch(cols: dict[str, pa.Array]) -> pa.RecordBatch:
    """Count rows: the given COUNT_COLUMNS, the rest null."""
    return _rows(COUNT, cols, len(cols["probe"]))


def stack_batch(ids: list[int], frames: list[list[str]]) -> pa.RecordBatch:
    """Stack rows: stack_id and frames; the event columns null."""
    return _rows(
        STACK,
        {"stack_id": pa.array(ids, pa.int32()), "frames": pa.array(frames, COLUMNS["frames"][0])},
        len(ids),
    )


def complete(table: pa.Table, kind: str) -> pa.Table:
    """A table of some columns as rows of the full schema (`record` = kind, the rest null)."""
    n = table.num_rows
    arrays = []
    for f in SCHEMA:
        if f.name == "record":
            arrays.append(pa.chunked_array([_constant(kind, n)]))
        elif f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.chunked_array([pa.nulls(n, f.type)]))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
