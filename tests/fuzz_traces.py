"""Hostile traces for every reader verb: a seeded mutator and an in-process runner.

`python tests/fuzz_traces.py --seed S -n N --report OUT.json` makes N mutants
of the committed traces (byte flips and truncations of the Parquet files and of
journals made from them, metadata and column edits, foreign Parquet files,
damaged sidecars), gives each to reader verbs through the click app in this
process, and writes every failure to OUT.json. A failure is an uncaught
exception, an exit status other than 0 or 2, a traceback in the output, or an
exit 0 whose output holds NaN/inf or a negative duration, size or count. A
segfault kills this process: test_fuzz.py runs it as a watched subprocess and
names the mutant from the progress file written before each run.

`--corpus DIR` runs the saved mutants in DIR (tests/fixtures/fuzz) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "traces"
SIDECAR = ".workload.json"

# Each verb as a user would type it; {t} is the trace, {o} a scratch output.
VERBS: list[list[str]] = [
    ["info", "{t}"],
    ["report", "{t}"],
    ["report", "--format", "json", "{t}"],
    ["calls", "{t}"],
    ["callgraph", "{t}", "-o", "{o}.dot"],
    ["export", "{t}", "--perfetto", "{o}.json"],
    ["overhead", "{t}"],
    ["compare", "{t}", "{t}"],
]

NAN = re.compile(r"(?<![A-Za-z_])(nan|-?inf(inity)?)(?![A-Za-z_])", re.I)
# A negative number followed by a unit of time, size or a count word.
NEGATIVE = re.compile(
    r"(?<![\w.])-\d[\d,.]*\s*(ns|us|µs|ms|s|B|KiB|MiB|GiB|KB|MB|GB|GB/s|bytes|events|calls|"
    r"maps|unmaps|flushes)\b"
)
NEG_KEYS = re.compile(r"(dur|_ns$|_s$|seconds|bytes|size|count|events|calls|maps|flushes|total)")


# ------------------------------------------------------------------ bases


def committed_traces() -> list[Path]:
    return sorted(TRACES.rglob("*.iot"))


def _v1_meta(meta: dict) -> dict[bytes, bytes]:
    """Metadata as a version-1 writer encoded it."""
    return {b"iommu_trace": json.dumps({**meta, "format": "iommu-trace", "version": 1}).encode()}


def _journal_bytes(base: Base, rng: random.Random, kind: str) -> bytes:
    """A journal as a recorder killed mid-run leaves it: "journal", the current format
    (v2, a framed IPC stream per batch); "message journal", v2 journals before that
    (framed record batch messages, plain strings); "legacy", unframed (a plain Arrow
    IPC stream of v1 events).

    Built in memory with the writer's own framing and encoding.
    """
    from iommu_trace.tracefile import journal
    from iommu_trace.tracefile.schema import JOURNAL_SCHEMA, SCHEMA
    from iommu_trace.tracefile.writer import encode_meta

    end = ("format", "version", "columns", "end_mono_ns", "end_wall", "exit_status", "counts",
           "drops", "lost", "events_written")  # fmt: skip
    meta = {k: v for k, v in base.meta.items() if k not in end}
    meta["finalized"] = False
    size = rng.choice([64, 500, 4096])
    if kind == "legacy":
        schema = base.v1.schema.with_metadata(_v1_meta(meta))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as w:
            for b in base.v1.to_batches(max_chunksize=size)[:6]:
                w.write_batch(b)
        return sink.getvalue().to_pybytes()
    events, stacks = base.v2_parts
    batches = stacks.to_batches() + events.to_batches(max_chunksize=size)[:6]
    if kind == "message journal":
        schema = JOURNAL_SCHEMA.with_metadata(encode_meta(meta))
        payloads = [b.cast(JOURNAL_SCHEMA).serialize() for b in batches]
    else:
        schema = SCHEMA.with_metadata(encode_meta(meta))
        payloads = [journal.stream(b.cast(SCHEMA)) for b in batches]
    parts = [journal.MAGIC, journal.frame(schema.serialize())]
    parts += [journal.frame(p) for p in payloads]
    return b"".join(parts)


class LegacyJournalWriter:
    """The unframed Arrow IPC stream of v1 events that journals were before checksums."""

    def __init__(self, path: str, meta: dict):
        from iommu_trace.tracefile.schema import V1_SCHEMA

        self._file = open(path, "wb")  # noqa: SIM115 - lives as long as the writer
        self._stream = pa.ipc.new_stream(self._file, V1_SCHEMA.with_metadata(_v1_meta(meta)))

    def write(self, batch: pa.RecordBatch) -> None:
        self._stream.write_batch(batch)
        self._file.flush()

    def abandon(self) -> None:
        self._file.close()


class Base:
    """A committed trace to mutate, as it is on disk (version 1 or 2), and in both versions."""

    def __init__(self, path: Path, data: bytes | None = None, label: str = ""):
        from iommu_trace.tracefile.reader import load
        from iommu_trace.tracefile.schema import EVENT, STACK, V1_SCHEMA, complete

        self.path = path
        self.label = label or str(path.relative_to(ROOT))
        self.data = data if data is not None else path.read_bytes()
        pf = pq.ParquetFile(pa.BufferReader(self.data))
        self.table = pf.read()
        self.meta = json.loads(pf.schema_arrow.metadata[b"iommu_trace"])
        t = load(str(path))
        self.v1 = t.table.select(V1_SCHEMA.names).cast(V1_SCHEMA)
        self.v2_parts = (complete(t.read(), EVENT), complete(t.stack_rows(), STACK))
        side = Path(str(path) + SIDECAR)
        self.sidecar = side.read_text() if side.exists() else None

    def as_v2(self) -> Base:
        """The same trace written as version 2 (the reader's lazy path)."""
        from iommu_trace.tracefile.reader import load
        from iommu_trace.tracefile.writer import write_parquet

        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "v2.iot"
            t = load(str(self.path))
            write_parquet(str(out), t.read(), t.stack_rows(), t.meta)
            data = out.read_bytes()
        return Base(self.path, data, self.label + " (as v2)")

    def as_counting(self) -> Base:
        """The same events summed into count rows, as `record --count` writes them."""
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "count.iot"
            as_counting(str(self.path), out)
            data = out.read_bytes()
        return Base(self.path, data, self.label + " (as counting)")


# One trace of real DMA/IOMMU events also mutated as a counting trace's count rows.
COUNTING_BASE = TRACES / "lab" / "dd64k-strict.iot"


def bases() -> list[Base]:
    out = []
    for p in committed_traces():
        b = Base(p)
        out.append(b)
        if b.meta.get("version", 1) < 2:
            out.append(b.as_v2())
        if p == COUNTING_BASE:
            out.append(b.as_counting())
    return out


def bucket(size: int) -> int:
    """The smallest k with size <= 2**k (program.c's tally)."""
    return 0 if size <= 1 else (size - 1).bit_length()


def as_counting(src: str, out: Path) -> None:
    """A real event trace's events summed into count rows as `record --count` keys them
    (probe, device, size bucket, second since the start): a counting trace of the same
    events, to check the readers against the same trace's events."""
    import numpy as np

    from iommu_trace.tracefile.reader import load
    from iommu_trace.tracefile.writer import write_parquet

    t = load(src)
    ev = t.read(["ts_ns", "probe", "group", "op", "dev", "size", "at_least"])
    ev = ev.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type)
                                     else f.type) for f in ev.schema]))  # fmt: skip
    start = t.metadata.start_mono_ns
    ts = ev["ts_ns"].to_numpy()
    sizes = ev["size"].to_pylist()
    ev = ev.append_column("second", pa.array(np.maximum(0, (ts - start) // 10**9), pa.int32()))
    buckets = [None if s is None else bucket(s) for s in sizes]
    ev = ev.append_column("size_bucket", pa.array(buckets, pa.int32()))
    keys = ["probe", "group", "op", "dev", "size_bucket", "second", "at_least"]
    rows = ev.group_by(keys).aggregate([("ts_ns", "count"), ("size", "sum")])
    rows = rows.rename_columns({"ts_ns_count": "count", "size_sum": "bytes"})
    meta = {**t.meta, "mode": "count", "count": {"origin_mono_ns": start, "map_full": {}}}
    write_parquet(str(out), t.read().slice(0, 0), t.stack_rows().slice(0, 0), meta, counts=rows)


# ------------------------------------------------------------------ mutations

# Each returns (file bytes, sidecar text or None, what was done).


def _flip(data: bytes, rng: random.Random, lo: int = 0) -> tuple[bytes, str]:
    b = bytearray(data)
    k = rng.choice([1, 1, 2, 4, 16])
    at = []
    for _ in range(k):
        i = rng.randrange(lo, len(b))
        b[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        at.append(i)
    return bytes(b), f"flip {k} bytes at {sorted(at)[:4]}"


def m_truncate(base: Base, rng):
    n = rng.randrange(1, len(base.data))
    return base.data[:n], base.sidecar, f"truncate to {n}"


def m_flip_any(base: Base, rng):
    d, what = _flip(base.data, rng)
    return d, base.sidecar, what


def m_flip_footer(base: Base, rng):
    d, what = _flip(base.data, rng, lo=max(0, len(base.data) - 4096))
    return d, base.sidecar, what + " (footer)"


def _journal(base: Base, rng) -> tuple[bytes, str]:
    kind = rng.choices(["journal", "message journal", "legacy"], [0.6, 0.2, 0.2])[0]
    return _journal_bytes(base, rng, kind), kind


def m_journal_cut(base: Base, rng):
    j, kind = _journal(base, rng)
    n = rng.randrange(1, len(j))
    return j[:n], base.sidecar, f"{kind} journal cut at {n} of {len(j)}"


def m_journal_flip(base: Base, rng):
    j, kind = _journal(base, rng)
    d, what = _flip(j, rng)
    return d, base.sidecar, f"{kind} journal, {what}"


def m_journal_whole(base: Base, rng):
    j, kind = _journal(base, rng)
    return j, base.sidecar, f"{kind} journal, intact"


def _write(table: pa.Table, meta, raw_meta: bytes | None = None) -> bytes:
    md = {b"iommu_trace": raw_meta if raw_meta is not None else json.dumps(meta).encode()}
    table = table.replace_schema_metadata(md)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


META_EDITS = [
    ("version", "<del>"),
    ("version", -1),
    ("version", 0),
    ("version", "1"),
    ("version", 1.5),
    ("version", None),
    ("version", True),
    ("version", 99),
    ("format", "other"),
    ("format", None),
    ("start_mono_ns", float("nan")),
    ("start_mono_ns", "soon"),
    ("start_mono_ns", -5),
    ("start_mono_ns", 1e30),
    ("start_mono_ns", None),
    ("end_mono_ns", 0),
    ("end_mono_ns", float("inf")),
    ("end_mono_ns", [1]),
    ("wall_minus_mono_ns", "x"),
    ("workload", "flexgen"),
    ("workload", []),
    ("workload", {"runs": "x"}),
    ("workload", {"runs": [1, "a", None]}),
    ("workload", {"runs": [{"bytes": -1, "seconds": 0}]}),
    ("workload", {"runs": [{"bytes": 1 << 30, "seconds": float("nan")}]}),
    ("workload", {"runs": [{"bytes": "many", "seconds": "long", "start_ns": "x"}]}),
    ("probes", "x"),
    ("probes", [1, 2]),
    ("probes", [{"name": 3, "status": "attach", "group": None}]),
    ("probes", None),
    ("probes", [{"status": "attach", "group": "dma", "op": "map"}]),
    ("counts", "x"),
    ("counts", {"dma_map": -1}),
    ("counts", {"dma_map": "x"}),
    ("drops", {"dma_map": -3}),
    ("drops", [1]),
    ("lost", -1),
    ("lost", "x"),
    ("iommu", "strict"),
    ("iommu", {"mode": 5, "notes": "x"}),
    ("kernel", "6.1"),
    ("command", "dd"),
    ("command", [1, None]),
    ("columns", "x"),
    ("finalized", "yes"),
    ("exit_status", "x"),
    ("events_written", -1),
    ("hostname", 7),
    ("mode", "count"),
    ("mode", 5),
    ("count", "x"),
    ("count", {"map_full": {"dma_map": -1}, "origin_mono_ns": "x"}),
]


def m_meta(base: Base, rng):
    meta = dict(base.meta)
    edits = rng.sample(META_EDITS, rng.choice([1, 1, 2, 3]))
    for key, val in edits:
        if val == "<del>":
            meta.pop(key, None)
        else:
            meta[key] = val
    return _write(base.table, meta), base.sidecar, f"meta {edits}"


def m_meta_raw(base: Base, rng):
    raw = rng.choice([b"{", b"[]", b"5", b'"x"', b"null", b"\xff\xfe", b"{}", b'{"format": 1}'])
    return _write(base.table, None, raw), base.sidecar, f"raw meta {raw!r}"


def _rows(table: pa.Table, rng) -> list[int]:
    n = table.num_rows
    if not n:
        return []
    return sorted(rng.sample(range(n), min(n, rng.choice([1, 3, 50]))))


def _set(col: pa.ChunkedArray, rows: list[int], value) -> pa.Array:
    if isinstance(value, int) and col.type == pa.int32():
        value = max(-(1 << 31), min(value, (1 << 31) - 1))
    vals = col.to_pylist()
    for r in rows:
        vals[r] = value
    return pa.array(vals, col.type)


INT_COLS = ["ts_ns", "dur_ns", "size", "count", "addr", "iova", "cpu", "pid", "tid", "ret", "dir",
            "second", "size_bucket", "bytes"]  # fmt: skip


def m_column(base: Base, rng):
    t = base.table
    kind = rng.choice(["null", "null_row", "negative", "huge", "nan", "type", "drop", "extra"])
    if kind == "null_row":
        rows = _rows(t, rng)
        for name in t.column_names:
            t = t.set_column(t.schema.get_field_index(name), name, _set(t[name], rows, None))
        return _write(t, base.meta), base.sidecar, f"all-null rows {rows[:4]}"
    ints = [c for c in INT_COLS if c in t.column_names]  # older traces lack the count columns
    name = rng.choice(ints if kind in ("negative", "huge", "nan") else t.column_names)
    i = t.schema.get_field_index(name)
    rows = _rows(t, rng)
    if kind == "null":
        t = t.set_column(i, name, _set(t[name], rows, None))
    elif kind == "negative":
        t = t.set_column(i, name, _set(t[name], rows, -rng.choice([1, 4096, 1 << 40])))
    elif kind == "huge":
        t = t.set_column(i, name, _set(t[name], rows, rng.choice([(1 << 63) - 1, -(1 << 63)])))
    elif kind == "nan":
        vals = [float(v) if v is not None else None for v in t[name].to_pylist()]
        for r in rows:
            vals[r] = rng.choice([float("nan"), float("inf"), -float("inf")])
        t = t.set_column(i, name, pa.array(vals, pa.float64()))
    elif kind == "type":
        new = pa.array([None if v is None else str(v) for v in t[name].to_pylist()], pa.string())
        t = t.set_column(i, name, new)
    elif kind == "drop":
        t = t.remove_column(i)
    else:
        t = t.append_column("extra", pa.array(range(t.num_rows), pa.int64()))
    return _write(t, base.meta), base.sidecar, f"column {name}: {kind} at {rows[:4]}"


def m_rows(base: Base, rng):
    t = base.table
    kind = rng.choice(["empty", "one", "shuffle", "head"])
    if kind == "empty":
        t = t.slice(0, 0)
    elif kind == "one":
        t = t.slice(rng.randrange(max(1, t.num_rows)), 1)
    elif kind == "shuffle":
        t = t.take(pa.array(rng.sample(range(t.num_rows), t.num_rows)))
    else:
        t = t.slice(0, rng.randrange(max(1, t.num_rows)))
    return _write(t, base.meta), base.sidecar, f"rows: {kind}"


def m_foreign(base: Base, rng):
    kind = rng.choice(["ab", "nometa", "ab3"])
    if kind == "nometa":
        sink = pa.BufferOutputStream()
        pq.write_table(base.table.replace_schema_metadata(None), sink)
        return sink.getvalue().to_pybytes(), None, "foreign: our columns, no metadata"
    n = 3 if kind == "ab3" else base.table.num_rows
    t = pa.table({"a": pa.array(range(n)), "b": pa.array([str(i) for i in range(n)])})
    return _write(t, base.meta), None, f"foreign: columns a, b ({n} rows) with copied metadata"


SIDECARS = [
    '{"workload": "flexgen"}',
    '{"workload": {"runs": "x"}}',
    '{"workload": {"runs": [{"bytes": -5, "seconds": -1}]}}',
    '{"workload": {"runs": [{"bytes": 1, "seconds": 0}]}}',
    '{"workload": {"runs": [{"bytes": 1, "seconds": NaN}]}}',
    "[1, 2]",
    "{",
    "\xff\xfe binary",
    '{"workload": null}',
    "5",
    "null",
    '{"steps": "x", "workload": {"runs": [{"t_start_ns": 5, "t_end_ns": 1}]}}',
]


def m_sidecar(base: Base, rng):
    meta = dict(base.meta)
    meta.pop("workload", None)  # so the reader looks at the sidecar
    s = rng.choice(SIDECARS)
    return _write(base.table, meta), s, f"sidecar {s!r}"


MUTATIONS = [
    (m_truncate, 2),
    (m_flip_any, 2),
    (m_flip_footer, 2),
    (m_journal_cut, 3),
    (m_journal_flip, 3),
    (m_journal_whole, 1),
    (m_meta, 4),
    (m_meta_raw, 1),
    (m_column, 5),
    (m_rows, 1),
    (m_foreign, 1),
    (m_sidecar, 1),
]


# ------------------------------------------------------------------ checks


def _negative_in_json(doc, path="") -> str | None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            bad = _negative_in_json(v, f"{path}.{k}")
            if bad:
                return bad
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            bad = _negative_in_json(v, f"{path}[{i}]")
            if bad:
                return bad
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        if isinstance(doc, float) and not math.isfinite(doc):
            return f"{path} = {doc}"
        key = path.rsplit(".", 1)[-1]
        if doc < 0 and NEG_KEYS.search(key) and "delta" not in key and "ratio" not in key:
            return f"{path} = {doc}"
    return None


def nonsense(stdout: str, fmt_json: bool) -> str | None:
    """Why an exit-0 output is impossible, or None."""
    m = NAN.search(stdout)
    if m:
        line = next(s for s in stdout.splitlines() if m.group(0) in s)
        return f"{m.group(0)!r} in output: {line.strip()[:160]}"
    m = NEGATIVE.search(stdout)
    if m:
        return f"negative value {m.group(0)!r}"
    if fmt_json:
        try:
            doc = json.loads(stdout, parse_constant=lambda c: float(c))
        except ValueError:
            return "--format json output is not JSON"
        return _negative_in_json(doc)
    return None


def run_verb(runner, cli, argv: list[str]) -> str | None:
    """One verb on one file: None if it behaved, else why not."""
    res = runner.invoke(cli, argv, catch_exceptions=True)
    exc = res.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if isinstance(exc, OSError) and exc.filename:  # main() prints these as one line
            return None
        import traceback

        tb = "".join(traceback.format_exception(exc)).strip().splitlines()
        return f"{type(exc).__name__}: {exc} [{' | '.join(tb[-4:-1])}]"
    out, err = res.stdout, res.stderr
    if "Traceback" in out + err:
        return "traceback in output"
    if res.exit_code not in (0, 2):
        return f"exit {res.exit_code}: {err.strip()[-200:]}"
    if res.exit_code == 2:
        lines = [x for x in err.splitlines() if x.strip() and "note:" not in x]
        if len(lines) != 1 or not lines[0].startswith(("iommu-trace: ", "Error: ", "Usage: ")):
            return f"exit 2 without one clear line: {err.strip()[-300:]!r}"
        return None
    return nonsense(out, "json" in argv)


# ------------------------------------------------------------------ driver


def _materialize(d: Path, name: str, data: bytes, sidecar: str | None) -> Path:
    p = d / f"{name}.iot"
    p.write_bytes(data)
    side = Path(str(p) + SIDECAR)
    if sidecar is not None:
        side.write_text(sidecar, errors="surrogateescape")
    elif side.exists():
        side.unlink()
    return p


def _verbs_for(i: int) -> list[list[str]]:
    """`info` (the cheapest) on every mutant, the other verbs in turn: 2 minutes for 1,000."""
    return [VERBS[0], VERBS[1 + i % (len(VERBS) - 1)]]


def fuzz(seed: int, n: int, work: Path, progress: Path, keep: Path | None) -> list[dict]:
    from click.testing import CliRunner

    from iommu_trace.cli import cli

    rng = random.Random(seed)
    every = bases()
    muts = [m for m, w in MUTATIONS for _ in range(w)]
    runner = CliRunner()
    failures = []
    for i in range(n):
        base = rng.choice(every)
        mut = rng.choice(muts)
        data, side, what = mut(base, random.Random(rng.random()))
        path = _materialize(work, f"m{i % 2}", data, side)
        desc = f"#{i} {base.label}: {mut.__name__[2:]}: {what}"
        for verb in _verbs_for(i):
            argv = [a.format(t=path, o=work / "out") for a in verb]
            progress.write_text(json.dumps({"case": desc, "argv": verb, "file": str(path)}))
            why = run_verb(runner, cli, argv)
            if why:
                failures.append({"case": desc, "verb": " ".join(verb[:3]), "why": why})
                if keep is not None:
                    shutil.copy(path, keep / f"fail-{i}.iot")
                    if side is not None:
                        (keep / f"fail-{i}.iot{SIDECAR}").write_text(side, errors="replace")
    return failures


def run_corpus(corpus: Path, progress: Path) -> list[dict]:
    from click.testing import CliRunner

    from iommu_trace.cli import cli

    runner = CliRunner()
    failures = []
    work = Path(tempfile.mkdtemp())
    for path in sorted(corpus.glob("*.iot")):
        for verb in VERBS:
            argv = [a.format(t=path, o=work / "out") for a in verb]
            progress.write_text(json.dumps({"case": path.name, "argv": verb, "file": str(path)}))
            why = run_verb(runner, cli, argv)
            if why:
                failures.append({"case": path.name, "verb": " ".join(verb[:3]), "why": why})
    shutil.rmtree(work, ignore_errors=True)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--report", required=True, help="failures as JSON")
    ap.add_argument("--progress", required=True, help="the case running now (for crashes)")
    ap.add_argument("--corpus", help="run the saved mutants in this folder instead")
    ap.add_argument("--keep", help="copy failing mutants here")
    a = ap.parse_args()
    faulthandler.enable()
    t0 = time.monotonic()
    progress = Path(a.progress)
    with contextlib.redirect_stderr(io.StringIO()):  # the verbs' notes; failures carry theirs
        if a.corpus:
            failures = run_corpus(Path(a.corpus), progress)
        else:
            work = Path(tempfile.mkdtemp(prefix="fuzz-"))
            keep = Path(a.keep) if a.keep else None
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
            try:
                failures = fuzz(a.seed, a.n, work, progress, keep)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    Path(a.report).write_text(
        json.dumps({"seconds": time.monotonic() - t0, "failures": failures}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
