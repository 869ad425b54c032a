"""Write a trace incrementally: an Arrow IPC journal, then a finalized Parquet file."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .schema import FORMAT, META_KEY, SCHEMA, VERSION, column_docs


def _encode(meta: dict) -> dict[bytes, bytes]:
    full = {"format": FORMAT, "version": VERSION, **meta, "columns": column_docs()}
    return {META_KEY: json.dumps(full, default=str).encode()}


class TraceWriter:
    """Batches go to the journal at `path` and are durable once written."""

    def __init__(self, path: str, meta: dict):
        self.path = path
        self.rows = 0
        self._schema = SCHEMA.with_metadata(_encode({**meta, "finalized": False}))
        self._file = open(path, "wb")  # noqa: SIM115 - lives as long as the writer
        self._stream = ipc.new_stream(self._file, self._schema)
        self._file.flush()

    def write(self, batch: pa.RecordBatch | None) -> None:
        if batch is None or not batch.num_rows:
            return
        self._stream.write_batch(batch)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows += batch.num_rows

    def finalize(self, meta: dict) -> None:
        """Rewrite the journal as Parquet (sorted by time) with the final metadata."""
        self._stream.close()
        self._file.close()
        with pa.OSFile(self.path, "rb") as f:
            table = ipc.open_stream(f).read_all()
        table = table.sort_by("ts_ns") if table.num_rows else table
        table = table.replace_schema_metadata(_encode({**meta, "finalized": True}))
        tmp = self.path + ".partial"
        pq.write_table(table, tmp, compression="zstd", row_group_size=65536)
        os.replace(tmp, self.path)
