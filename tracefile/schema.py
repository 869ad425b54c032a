"""Trace format v1: one Parquet file of events, metadata in its key-value footer.

While recording, the same path holds an Arrow IPC stream (the journal), which
is readable up to its last flushed batch if the recorder dies; finalizing
rewrites it as Parquet. See docs/trace-format.md.
"""

from __future__ import annotations

import pyarrow as pa

FORMAT = "iommu-trace"
VERSION = 1
META_KEY = b"iommu_trace"

# column -> (arrow type, meaning); the meaning is stored in the file too.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "ts_ns": (pa.int64(), "CLOCK_MONOTONIC ns; for calls, the entry time"),
    "dur_ns": (pa.int64(), "return minus entry for calls and syscalls; null for instants"),
    "cpu": (pa.int32(), "CPU the event ran on"),
    "pid": (pa.int32(), "process (tgid) current when the event fired"),
    "tid": (pa.int32(), "thread current when the event fired"),
    "comm": (pa.string(), "command name of that thread"),
    "probe": (pa.string(), "catalog probe name (iommu-trace probes)"),
    "group": (
        pa.string(),
        "dma|iommu-map|iotlb-flush|iova|nvidia|cuda-driver|cuda-runtime|syscall|user",
    ),
    "op": (pa.string(), "map|unmap|alloc|free|flush|iova_alloc|iova_free|call|ioctl"),
    "dev": (pa.string(), "device name (e.g. 0000:01:00.0), where the probe knows it"),
    "addr": (pa.int64(), "CPU/physical address (pseudonymized unless --keep-addresses)"),
    "iova": (pa.int64(), "DMA address / IOVA (pseudonymized unless --keep-addresses)"),
    "size": (pa.int64(), "bytes"),
    "dir": (pa.int64(), "DMA direction: 0 bidirectional, 1 to device, 2 from device, 3 none"),
    "count": (pa.int64(), "entries/pages/fd, per probe (see the probe's doc)"),
    "flags": (pa.int64(), "attrs/flags argument"),
    "cmd": (pa.int64(), "ioctl request"),
    "ret": (pa.int64(), "return value (signed)"),
    "nents": (pa.int64(), "scatter-list entries handed to an sg call (count: the mapped ones)"),
    "at_least": (
        pa.bool_(),
        "true: size/count are lower bounds (a scatter-list walk hit its bound); "
        "null where the probe walks no list",
    ),
    "kstack": (pa.list_(pa.string()), "kernel stack, innermost first, 'function [module]'"),
    "ustack": (pa.list_(pa.string()), "user stack, innermost first, 'function [object]'"),
}

SCHEMA = pa.schema([pa.field(n, t, nullable=True) for n, (t, _) in COLUMNS.items()])
ADDRESS_COLUMNS = ("addr", "iova")


def column_docs() -> dict[str, str]:
    return {n: doc for n, (_, doc) in COLUMNS.items()}
