"""Write a trace incrementally: a checksummed journal, then a finalized Parquet file."""

from __future__ import annotations

import json
import os
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..system.fds import lift
from . import journal
from .schema import (
    COUNT,
    COUNT_COLUMNS,
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
    path: str,
    events: pa.Table,
    stacks: pa.Table,
    meta: dict,
    owner: tuple[int, int] | None = None,
    counts: pa.Table | None = None,
) -> None:
    """Events (sorted by time) in row groups of ROW_GROUP_ROWS, then the stack rows, then
    a counting trace's count rows (in the order given: the recorder's is by probe and second).

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
        if counts is not None and counts.num_rows:
            counts = complete(counts.select(list(COUNT_COLUMNS)), COUNT)
            w.write_table(counts, row_group_size=ROW_GROUP_ROWS)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def _sorted(ts: pa.ChunkedArray) -> bool:
    """Whether the times are in order already (the ring buffer's order nearly always is)."""
    if ts.null_count:
        return False
    v = ts.to_numpy()
    return bool((v[1:] >= v[:-1]).all())


def split_records(table: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(event rows, stack rows, count rows) of a version-2 table that holds them.

    The recorder writes each batch as rows of one kind, and Parquet row groups
    keep a dictionary per group: a batch whose `record` dictionary has one value
    goes whole to its side; only mixed batches are filtered row by row. Rows of
    no known kind stay with the events (where the checks drop what has no time).
    """
    parts: dict[str, list[pa.RecordBatch]] = {EVENT: [], STACK: [], COUNT: []}
    for batch in table.to_batches():
        rec = batch.column("record")
        if isinstance(rec, pa.DictionaryArray) and not rec.null_count and len(rec.dictionary) == 1:
            kind = rec.dictionary[0].as_py()
            parts[kind if kind in (STACK, COUNT) else EVENT].append(batch)
            continue
        kinds = rec.cast(pa.string())
        is_stack = pc.fill_null(pc.equal(kinds, STACK), False)
        is_count = pc.fill_null(pc.equal(kinds, COUNT), False)
        parts[EVENT].append(batch.filter(pc.invert(pc.or_(is_stack, is_count))))
        parts[STACK].append(batch.filter(is_stack))
        parts[COUNT].append(batch.filter(is_count))
    return tuple(pa.Table.from_batches(parts[k], table.schema) for k in (EVENT, STACK, COUNT))


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
        self.count_rows = 0
        self._schema = SCHEMA.with_metadata(encode_meta({**meta, "finalized": False}))
        # lifted: libbcc's stray close() (system/fds.py) would otherwise end the journal
        self._fd = lift(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
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

    def write(
        self,
        batch: pa.RecordBatch | None,
        stacks: pa.RecordBatch | None = None,
        counts: pa.RecordBatch | None = None,
    ) -> None:
        """Journal new stacks, then the events that refer to them, in one write and fsync;
        a counting recording's count rows (schema.count_batch) likewise."""
        new = [b for b in (stacks, batch, counts) if b is not None and b.num_rows]
        frames = [journal.frame(journal.stream(b)) for b in new]
        if not frames:
            return
        self._append(b"".join(frames))
        if self._syncer is None:  # not before: the recorder forks the command after __init__
            self._syncer = threading.Thread(target=self._sync, name="journal-fsync", daemon=True)
            self._syncer.start()
        self.rows += batch.num_rows if batch is not None else 0
        self.stacks += stacks.num_rows if stacks is not None else 0
        self.count_rows += counts.num_rows if counts is not None else 0

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
        events, stacks, counts = split_records(table)
        write_parquet(self.path, events, stacks, meta, self._owner, counts)
