"""Read a trace (finalized Parquet, or the journal a killed recorder left)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from . import sidecar
from .meta import TraceMeta
from .schema import FORMAT, META_KEY, VERSION

PARQUET_MAGIC = b"PAR1"
IPC_MAGIC = b"\xff\xff\xff\xff"


class TraceError(ValueError):
    """A trace that cannot be read; the message is one line for the user."""


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


def _meta(raw: dict[bytes, bytes] | None, path: str) -> dict:
    if not raw or META_KEY not in raw:
        raise TraceError(f"{path}: not an iommu-trace file (no {META_KEY.decode()} metadata)")
    try:
        meta = json.loads(raw[META_KEY])
    except ValueError as e:
        raise TraceError(f"{path}: trace metadata is corrupt ({e})") from None
    if meta.get("format") != FORMAT:
        raise TraceError(f"{path}: not an iommu-trace file (format {meta.get('format')!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise TraceError(
            f"{path}: trace format version {version} is newer than this iommu-trace reads "
            f"({VERSION}); upgrade iommu-trace"
        )
    return meta


def _read_journal(path: str) -> Trace:
    batches = []
    notes = []
    with pa.OSFile(path, "rb") as f:
        try:
            reader = ipc.open_stream(f)
        except (pa.ArrowInvalid, OSError) as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise TraceError(f"{path}: trace journal is corrupt ({first})") from None
        meta = _meta(reader.schema.metadata, path)
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError):
                notes.append("the journal ends in a partly written batch, which was skipped")
                break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    notes.insert(
        0,
        "trace was not finalized (the recorder was killed?): events up to its last flush are "
        "here, exact per-probe counts and the exit status are not",
    )
    return Trace(path, meta, table, finalized=False, notes=notes)


def load(path: str) -> Trace:
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise TraceError(f"{path}: empty file (the recorder died before writing anything)")
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if head == IPC_MAGIC:
        return _read_journal(path)
    if head != PARQUET_MAGIC:
        raise TraceError(f"{path}: not an iommu-trace file (unknown format)")
    if tail != PARQUET_MAGIC:
        raise TraceError(f"{path}: truncated trace file (Parquet footer missing)")
    try:
        pf = pq.ParquetFile(path)
        meta = _meta(pf.schema_arrow.metadata, path)
        table = pf.read()
    except TraceError:
        raise
    except Exception as e:  # pyarrow raises several types for damaged files
        first = (str(e).strip().splitlines() or [""])[0]
        raise TraceError(f"{path}: corrupt trace file ({type(e).__name__}: {first})") from None
    return Trace(path, meta, table, finalized=bool(meta.get("finalized", True)))
