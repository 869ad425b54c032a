"""Write a trace incrementally: a checksummed journal, then a finalized Parquet file."""

from __future__ import annotations

import json
import os
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import journal
from .schema import (
    EVENT,
    FORMAT,
    META_KEY,
    ROW_GROUP_ROWS,
    SCHEMA,
    STACK,
    VERSION,
    column_docs,
    complete,
)


def encode_meta(meta: dict) -> dict[bytes, bytes]:
    full = {**meta, "format": FORMAT, "version": VERSION, "columns": column_docs()}
    return {META_KEY: json.dumps(full, default=str).encode()}


def parquet_writer(path: str, meta: dict) -> pq.ParquetWriter:
    """zstd; sorted timestamps delta-encoded (a third of v1's size), the rest dictionary;
    page checksums, so a damaged data page is an error and not a wrong value."""
    return pq.ParquetWriter(
        path,
        SCHEMA.with_metadata(encode_meta({**meta, "finalized": True})),
        compression="zstd",
        use_dictionary=[n for n in SCHEMA.names if n != "ts_ns"],
        column_encoding={"ts_ns": "DELTA_BINARY_PACKED"},
        write_page_checksum=True,
    )


def write_parquet(
    path: str, events: pa.Table, stacks: pa.Table, meta: dict, owner: tuple[int, int] | None = None
) -> None:
    """Events (sorted by time) in row groups of ROW_GROUP_ROWS, then the stack rows.

    Written to `path`.partial and renamed: a reader never sees half a file.
    """
    if events.num_rows and not _sorted(events.column("ts_ns")):
        events = events.sort_by("ts_ns")
    tmp = path + ".partial"
    with parquet_writer(tmp, meta) as w:
        w.write_table(complete(events, EVENT), row_group_size=ROW_GROUP_ROWS)
        if stacks.num_rows:
            stacks = complete(stacks.select(["stack_id", "frames"]), STACK).sort_by("stack_id")
            w.write_table(stacks, row_group_size=ROW_GROUP_ROWS)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def _sorted(ts: pa.ChunkedArray) -> bool:
    """Whether the times are in order already (the ring buffer's order nearly always is)."""
    if ts.null_count:
        return False
    v = ts.to_numpy()
    return bool((v[1:] >= v[:-1]).all())


def split_records(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(event rows, stack rows) of a version-2 table that holds both.

    The recorder writes each batch as all events or all stacks, and Parquet row
    groups keep a dictionary per group: a batch whose `record` dictionary has one
    value goes whole to its side; only mixed batches are filtered row by row.
    """
    events: list[pa.RecordBatch] = []
    stacks: list[pa.RecordBatch] = []
    for batch in table.to_batches():
        rec = batch.column("record")
        if isinstance(rec, pa.DictionaryArray) and not rec.null_count and len(rec.dictionary) == 1:
            (stacks if rec.dictionary[0].as_py() == STACK else events).append(batch)
            continue
        is_stack = pc.fill_null(pc.equal(rec.cast(pa.string()), STACK), False)
        events.append(batch.filter(pc.invert(is_stack)))
        stacks.append(batch.filter(is_stack))
    return (
        pa.Table.from_batches(events, table.schema),
        pa.Table.from_batches(stacks, table.schema),
    )


# How often the journal is fsync'ed. A killed recorder loses nothing written
# (the page cache keeps it); this bounds what a machine crash loses. One fsync
# per batch cost ~20 ms of the recorder's time at 3 MB (the 2-vCPU CI VM), more
# than the batch itself at a million events a second, so a thread does it.
FSYNC_S = 0.5


class TraceWriter:
    """Batches go to the journal at `path`: readable once written, on disk within FSYNC_S."""

    def __init__(self, path: str, meta: dict, owner: tuple[int, int] | None = None):
        self.path = path
        self._owner = owner  # (uid, gid) the files are given to: the user behind sudo
        self.rows = 0
        self.stacks = 0
        self._schema = SCHEMA.with_metadata(encode_meta({**meta, "finalized": False}))
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if owner is not None:
            os.fchown(self._fd, *owner)
        self._append(journal.MAGIC + journal.frame(self._schema.serialize()))
        os.fsync(self._fd)
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None  # started at the first batch

    def _append(self, data: bytes) -> None:
        os.write(self._fd, data)  # one write per flush: a kill tears at most the last

    def _sync(self) -> None:
        while not self._stop.wait(FSYNC_S):
            os.fsync(self._fd)

    def _stop_sync(self) -> None:
        if self._syncer is not None:
            self._stop.set()
            self._syncer.join()

    def write(self, batch: pa.RecordBatch | None, stacks: pa.RecordBatch | None = None) -> None:
        """Journal new stacks, then the events that refer to them, in one write and fsync."""
        new = [b for b in (stacks, batch) if b is not None and b.num_rows]
        frames = [journal.frame(journal.stream(b)) for b in new]
        if not frames:
            return
        self._append(b"".join(frames))
        if self._syncer is None:  # not before: the recorder forks the command after __init__
            self._syncer = threading.Thread(target=self._sync, name="journal-fsync", daemon=True)
            self._syncer.start()
        self.rows += batch.num_rows if batch is not None else 0
        self.stacks += stacks.num_rows if stacks is not None else 0

    def abandon(self) -> None:
        """Stop without finalizing (what a killed recorder leaves: the journal)."""
        self._stop_sync()
        os.close(self._fd)

    def finalize(self, meta: dict) -> None:
        """Rewrite the journal as Parquet with the final metadata."""
        self._stop_sync()
        os.close(self._fd)
        with open(self.path, "rb") as f:
            j = journal.read(f.read())
        table = pa.Table.from_batches(j.batches, schema=self._schema)
        events, stacks = split_records(table)
        write_parquet(self.path, events, stacks, meta, self._owner)
