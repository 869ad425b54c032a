"""Read a trace (finalized Parquet, or the journal a killed recorder left): the one reader.

Every trace goes through validate.check, so no analysis sees a field of the
wrong type or an impossible row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import journal, sidecar
from .meta import TraceMeta
from .validate import TraceError, check, decode_meta

PARQUET_MAGIC = b"PAR1"
IPC_MAGIC = b"\xff\xff\xff\xff"  # the unframed journals of earlier versions

__all__ = ["Trace", "TraceError", "load"]


@dataclass
class Trace:
    path: str
    meta: dict
    table: pa.Table
    finalized: bool
    notes: list[str] = field(default_factory=list)
    _events: pd.DataFrame | None = None
    _workload: dict | None = None
    _metadata: TraceMeta | None = None

    @property
    def metadata(self) -> TraceMeta:
        """The metadata, typed (`meta` is the raw JSON)."""
        if self._metadata is None:
            self._metadata = TraceMeta.from_json(self.meta)
        return self._metadata

    @property
    def events(self) -> pd.DataFrame:
        if self._events is None:
            # Arrow-backed columns keep 64-bit addresses exact despite nulls.
            self._events = self.table.to_pandas(types_mapper=pd.ArrowDtype)
        return self._events

    def workload(self) -> dict:
        """The workload's own results: trace metadata, else TRACE.workload.json (read once).

        Raises sidecar.SidecarError when the sidecar exists but cannot be read.
        """
        if self._workload is None:
            w = self.metadata.workload
            if not w:
                side = sidecar.read_workload(self.path)
                w = side.results if side else {}
            self._workload = w
        return self._workload


def _read_journal(path: str, head: bytes) -> Trace:
    with open(path, "rb") as f:
        try:
            j = journal.read(f.read()) if head == journal.MAGIC else journal.read_legacy(f)
        except journal.JournalError as e:
            raise TraceError(f"{path}: trace journal is corrupt: {e}") from None
    notes: list[str] = []
    meta, table = check(path, j.schema.metadata, pa.Table.from_batches(j.batches, j.schema), notes)
    rows = table.num_rows
    notes.insert(
        0,
        "trace was not finalized (the recorder was killed?): events up to its last flush are "
        "here, exact per-probe counts and the exit status are not",
    )
    if j.damage:
        notes.insert(
            1,
            f"the journal is damaged from {j.damage}: the {len(j.batches)} batches before it "
            f"({rows} events) are read, the rest is not",
        )
    return Trace(path, meta, table, finalized=False, notes=notes)


def load(path: str) -> Trace:
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise TraceError(f"{path}: empty file (the recorder died before writing anything)")
    with open(path, "rb") as f:
        head = f.read(len(journal.MAGIC))
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if head == journal.MAGIC or head.startswith(IPC_MAGIC):
        return _read_journal(path, head)
    if not head.startswith(PARQUET_MAGIC):
        raise TraceError(f"{path}: not an iommu-trace file (unknown format)")
    if tail != PARQUET_MAGIC:
        raise TraceError(f"{path}: truncated trace file (Parquet footer missing)")
    try:
        pf = pq.ParquetFile(path)
        raw_meta = pf.schema_arrow.metadata
    except Exception as e:  # pyarrow raises several types for damaged files
        raise TraceError(f"{path}: corrupt trace file ({_why(e)})") from None
    notes: list[str] = []
    decode_meta(raw_meta, path)  # a foreign file is refused before its data is read
    try:
        table = pf.read()
    except Exception as e:
        raise TraceError(f"{path}: corrupt trace file ({_why(e)})") from None
    meta, table = check(path, raw_meta, table, notes)
    return Trace(path, meta, table, finalized=bool(meta.get("finalized", True)), notes=notes)


def _why(e: Exception) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"
