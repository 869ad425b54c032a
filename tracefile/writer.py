"""Write a trace incrementally: an Arrow IPC journal, then a finalized Parquet file."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .schema import FORMAT, META_KEY, SCHEMA, VERSION, column_docs


def _encode(meta: dict) -> dict[bytes, bytes]:
    full = {"format": FORMAT, "version": VERSION, **meta, "columns": column_docs()}
    return {META_KEY: json.dumps(full, default=str).encode()}


class TraceWriter:
    """Append rows; every flush makes them durable in the journal at `path`."""

    def __init__(self, path: str, meta: dict, flush_rows: int = 4096, flush_s: float = 0.5):
        self.path = path
        self.rows = 0
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._last = time.monotonic()
        self._buf: dict[str, list] = {n: [] for n in SCHEMA.names}
        self._schema = SCHEMA.with_metadata(_encode({**meta, "finalized": False}))
        self._file = open(path, "wb")  # noqa: SIM115 - lives as long as the writer
        self._stream = ipc.new_stream(self._file, self._schema)
        self._file.flush()

    def append(self, row: dict) -> None:
        for name, col in self._buf.items():
            col.append(row.get(name))
        if len(self._buf["ts_ns"]) >= self._flush_rows:
            self.flush()

    def maybe_flush(self) -> None:
        if self._buf["ts_ns"] and time.monotonic() - self._last >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        n = len(self._buf["ts_ns"])
        if not n:
            return
        batch = pa.record_batch(
            [pa.array(self._buf[f.name], f.type) for f in SCHEMA], schema=SCHEMA
        )
        self._stream.write_batch(batch)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows += n
        for col in self._buf.values():
            col.clear()

    def finalize(self, meta: dict) -> None:
        """Rewrite the journal as Parquet (sorted by time) with the final metadata."""
        self.flush()
        self._stream.close()
        self._file.close()
        with pa.OSFile(self.path, "rb") as f:
            table = ipc.open_stream(f).read_all()
        table = table.sort_by("ts_ns") if table.num_rows else table
        table = table.replace_schema_metadata(_encode({**meta, "finalized": True}))
        tmp = self.path + ".partial"
        pq.write_table(table, tmp, compression="zstd", row_group_size=65536)
        os.replace(tmp, self.path)
