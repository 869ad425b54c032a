"""Write a trace incrementally: a checksummed journal, then a finalized Parquet file."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from . import journal
from .schema import FORMAT, META_KEY, SCHEMA, VERSION, column_docs


def _encode(meta: dict) -> dict[bytes, bytes]:
    full = {"format": FORMAT, "version": VERSION, **meta, "columns": column_docs()}
    return {META_KEY: json.dumps(full, default=str).encode()}


class TraceWriter:
    """Batches go to the journal at `path` and are durable once written."""

    def __init__(self, path: str, meta: dict, owner: tuple[int, int] | None = None):
        self.path = path
        self._owner = owner  # (uid, gid) the files are given to: the user behind sudo
        self.rows = 0
        self._schema = SCHEMA.with_metadata(_encode({**meta, "finalized": False}))
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if owner is not None:
            os.fchown(self._fd, *owner)
        self._append(journal.MAGIC + journal.frame(self._schema.serialize()))

    def _append(self, data: bytes) -> None:
        os.write(self._fd, data)  # one write per frame: a kill tears at most the last
        os.fsync(self._fd)

    def write(self, batch: pa.RecordBatch | None) -> None:
        if batch is None or not batch.num_rows:
            return
        self._append(journal.frame(batch.serialize()))
        self.rows += batch.num_rows

    def abandon(self) -> None:
        """Stop without finalizing (what a killed recorder leaves: the journal)."""
        os.close(self._fd)

    def finalize(self, meta: dict) -> None:
        """Rewrite the journal as Parquet (sorted by time) with the final metadata."""
        os.close(self._fd)
        with open(self.path, "rb") as f:
            j = journal.read(f.read())
        table = pa.Table.from_batches(j.batches, schema=self._schema)
        table = table.sort_by("ts_ns") if table.num_rows else table
        table = table.replace_schema_metadata(_encode({**meta, "finalized": True}))
        tmp = self.path + ".partial"
        pq.write_table(table, tmp, compression="zstd", row_group_size=65536)
        if self._owner is not None:
            os.chown(tmp, *self._owner)
        os.replace(tmp, self.path)
