"""The checksummed journal and the reader's validation layer, on real traces' events."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fuzz_traces import LegacyJournalWriter

from iommu_trace.tracefile.reader import TraceError, load
from iommu_trace.tracefile.schema import SCHEMA, V1_SCHEMA, VERSION
from iommu_trace.tracefile.writer import TraceWriter
from iommu_trace.tracer.addresses import Pseudonymizer, TextRedactor, raw_addresses_in

from conftest import TRACES, cli, one_line_error

LAB = TRACES / "lab" / "dd64k-strict.iot"


@pytest.fixture(scope="module")
def events() -> tuple[pa.Table, dict]:
    pf = pq.ParquetFile(LAB)
    meta = json.loads(pf.schema_arrow.metadata[b"iommu_trace"])
    keep = {"command", "probes", "iommu", "kernel", "start_mono_ns"}
    old = pf.read().slice(0, 500)
    # the committed trace predates some columns: give it the writer's schema
    cols = [
        old[f.name].cast(f.type) if f.name in old.column_names else pa.nulls(old.num_rows, f.type)
        for f in SCHEMA
    ]
    table = pa.Table.from_arrays(cols, schema=SCHEMA)
    return table, {k: v for k, v in meta.items() if k in keep}


def _journal(path: Path, table: pa.Table, meta: dict, rows: int = 100) -> list[int]:
    """Five batches of `rows` events; the byte offset where each batch's frame starts."""
    w = TraceWriter(str(path), meta)
    starts = []
    for b in table.to_batches(max_chunksize=rows)[:5]:
        starts.append(os.path.getsize(path))
        w.write(b)
    w.abandon()
    return starts


def test_intact_journal_reads_every_batch(events, tmp_path):
    table, meta = events
    p = tmp_path / "j.iot"
    _journal(p, table, meta)
    t = load(str(p))
    assert not t.finalized and t.table.num_rows == 500
    assert t.table["ts_ns"].equals(table["ts_ns"])
    assert not any("damaged" in n for n in t.notes)


def test_flipped_byte_keeps_the_batches_before_it(events, tmp_path):
    table, meta = events
    p = tmp_path / "j.iot"
    starts = _journal(p, table, meta)
    data = bytearray(p.read_bytes())
    data[starts[2] + 200] ^= 0x04  # inside batch 3's payload
    p.write_bytes(bytes(data))
    t = load(str(p))
    assert t.table.num_rows == 200
    (note,) = [n for n in t.notes if "damaged" in n]
    assert f"byte {starts[2]} (batch 3: a checksum mismatch)" in note
    assert "2 batches before it (200 events)" in note


def test_torn_last_batch(events, tmp_path):
    table, meta = events
    p = tmp_path / "j.iot"
    starts = _journal(p, table, meta)
    p.write_bytes(p.read_bytes()[: starts[4] + 50])
    t = load(str(p))
    assert t.table.num_rows == 400
    assert any(f"byte {starts[4]} (batch 5: " in n and "torn" in n for n in t.notes)


def test_damaged_header_is_one_line(events, tmp_path):
    table, meta = events
    p = tmp_path / "j.iot"
    _journal(p, table, meta)
    data = bytearray(p.read_bytes())
    data[40] ^= 0xFF  # inside the schema frame
    p.write_bytes(bytes(data))
    assert "trace journal is corrupt: its header is damaged" in one_line_error(cli("info", str(p)))


def test_journal_of_earlier_versions_still_reads(events, tmp_path):
    _, meta = events
    table = pq.read_table(LAB).slice(0, 500)  # version-1 events, as such journals held
    table = pa.Table.from_arrays(
        [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(500, f.type)
         for f in V1_SCHEMA], schema=V1_SCHEMA,
    )  # fmt: skip
    p = tmp_path / "old.iot"
    w = LegacyJournalWriter(str(p), {**meta, "finalized": False})
    for b in table.to_batches(max_chunksize=100):
        w.write(b)
    w.abandon()
    t = load(str(p))
    assert t.table.num_rows == 500 and not t.finalized


def test_finalize_turns_the_journal_into_parquet(events, tmp_path):
    table, meta = events
    p = tmp_path / "f.iot"
    w = TraceWriter(str(p), meta)
    for b in table.to_batches(max_chunksize=128):
        w.write(b)
    w.finalize({**meta, "exit_status": 0})
    assert p.read_bytes()[:4] == b"PAR1"
    t = load(str(p))
    assert t.finalized and t.table.num_rows == 500 and t.meta["exit_status"] == 0


def test_writer_gives_the_files_to_the_owner(events, tmp_path):
    """What the recorder does under sudo: journal and finalized trace are the user's."""
    table, meta = events
    p = tmp_path / "o.iot"
    w = TraceWriter(str(p), meta, owner=(65534, 65534))
    assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534)
    w.write(table.to_batches(max_chunksize=100)[0])
    w.finalize(meta)
    assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534)


# ---------------------------------------------------------------- validation


def _parquet(tmp_path: Path, table: pa.Table, meta: dict | None, raw: bytes | None = None) -> str:
    md = {b"iommu_trace": raw if raw is not None else json.dumps(meta).encode()}
    p = tmp_path / "v.iot"
    pq.write_table(table.replace_schema_metadata(md), p)
    return str(p)


def _meta() -> dict:
    """The committed trace's metadata, for the version of the `events` table."""
    meta = json.loads(pq.ParquetFile(LAB).schema_arrow.metadata[b"iommu_trace"])
    return {**meta, "version": VERSION}


@pytest.mark.parametrize(
    "edit, words",
    [
        ({"version": None}, "has no format version"),
        ({"version": 0}, "version 0 is invalid"),
        ({"version": -1}, "version -1 is invalid"),
        ({"version": "1"}, "version '1' is not an integer"),
        ({"version": VERSION + 1}, "newer than this iommu-trace reads"),
        ({"format": "other"}, "not an iommu-trace file"),
    ],
)
def test_version_mismatch_is_one_clear_line(events, tmp_path, edit, words):
    meta = _meta()
    meta.update(edit)
    if edit.get("version", 1) is None:
        meta.pop("version")
    with pytest.raises(TraceError, match=words):
        load(_parquet(tmp_path, events[0], meta))


def test_foreign_table_with_copied_metadata(tmp_path):
    p = _parquet(tmp_path, pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}), _meta())
    line = one_line_error(cli("info", p))
    assert "not an iommu-trace event table (no ts_ns, probe column; it has a, b)" in line


def test_wrong_column_type(events, tmp_path):
    t = events[0]
    t = t.set_column(t.schema.get_field_index("size"), "size", t["size"].cast(pa.string()))
    with pytest.raises(
        TraceError, match=f"column size is string, format version {VERSION} has int64"
    ):
        load(_parquet(tmp_path, t, _meta()))


def test_impossible_values_are_dropped_or_nulled_with_a_note(events, tmp_path):
    t = events[0]
    ts = t["ts_ns"].to_pylist()
    ts[3] = None
    dur = [float(v) if v is not None else None for v in t["dur_ns"].to_pylist()]
    dur[5], dur[6] = float("nan"), -100.0
    t = t.set_column(t.schema.get_field_index("ts_ns"), "ts_ns", pa.array(ts, pa.int64()))
    i = t.schema.get_field_index("dur_ns")
    t = t.set_column(i, "dur_ns", pa.array(dur, pa.float64()))  # float: another writer's
    meta = {**_meta(), "start_mono_ns": "soon", "workload": "flexgen", "probes": [1, {"name": 2}]}
    tr = load(_parquet(tmp_path, t, meta))
    assert tr.table.num_rows == 499 and tr.table["dur_ns"].type == pa.int64()
    assert tr.table["dur_ns"].null_count == t["dur_ns"].null_count + 2
    assert "start_mono_ns" not in tr.meta and "workload" not in tr.meta
    assert tr.meta["probes"] == []
    text = " | ".join(tr.notes)
    for words in (
        "1 events without a valid time",
        "negative or impossibly large values made null: 1 dur_ns",
        "1 values that are not finite",
        "start_mono_ns (str",
        "workload (str",
    ):
        assert words in text, text


# ---------------------------------------------------------------- redaction


def test_metadata_text_redaction():
    r = TextRedactor()
    lines = [
        "[    0.19] DMAR: DRHD base: 0x000000fed90000 flags: 0x0",
        "[    0.19] DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap d2008c22260206 ecap f00f4a",
        "ACPI: Reserving DMAR table memory at [mem 0x7ffe234d-0x7ffe2404]",
        "console=ttyS0 fc_dmapin=0xeebe0000,0x3000,0xeebf0000 -- --addr 0.0.0.0:2024",
    ]
    out = r.tree(lines)
    assert out[0] == "[    0.19] DMAR: DRHD base: addr#1 flags: 0x0"
    assert out[1].startswith("[    0.19] DMAR: dmar0: reg_base_addr addr#1 ver 1:0 cap addr#2")
    assert out[2].endswith("[mem addr#3-addr#4]")
    assert out[3] == "console=ttyS0 fc_dmapin=addr#5,0x3000,addr#6 -- --addr 0.0.0.0:2024"
    assert raw_addresses_in(lines) and not raw_addresses_in(out)


def test_page_numbers_and_pointers_are_pseudonymized():
    p = Pseudonymizer()
    pfn = np.array([0xFFEF0, 0xFFEF0, 0xFFEF1, 0x7F000], np.uint64)
    out = p.pfn("iova", pfn)
    assert out[0] == out[1] and out[2] == out[0] + 1  # joins and adjacency survive
    assert int(out.max()) >> 9 <= 2  # region numbers 1, 2: the raw page numbers are gone
    v = np.array([0, 12, -22 & (2**64 - 1), 0x7F3A_1234_5000, 0x7F3A_1234_6000], np.uint64)
    out = p.pointer("addr", v)
    assert out[:3].tolist() == v[:3].tolist()  # codes and errors stay
    assert out[4] - out[3] == 0x1000 and int(out[3]) >> 21 == 1
