"""Check a trace against its format version before any analysis sees it.

The reader hands over the raw metadata bytes and the table; what comes back is
metadata whose fields have the documented types and a table with the version's
columns and types and no impossible row. What cannot be read is a TraceError
(one line); what can be repaired without inventing data is repaired and said in
a note: a field of the wrong type is ignored, a row without a time or a probe
is dropped, an impossible value (a negative duration, size or count, NaN) is
made null.
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import TraceError
from .schema import (
    COLUMNS,
    COUNT_COLUMNS,
    EVENT_COLUMNS,
    FORMAT,
    META_KEY,
    STACK_COLUMNS,
    V1_COLUMNS,
    VERSION,
)

# Columns the recorder added within format version 1: older traces lack them.
ADDED_LATER = ("nents", "at_least")
# The event columns of each version, and version 2's stack rows.
EVENTS = {1: V1_COLUMNS, 2: {n: COLUMNS[n] for n in EVENT_COLUMNS}}
STACKS = {n: COLUMNS[n] for n in STACK_COLUMNS}
COUNTS = {n: COLUMNS[n] for n in COUNT_COLUMNS}
# A count row's size bucket k says size <= 2**k: sizes are u64, so k is 0..64.
MAX_SIZE_BUCKET = 64
# Columns without which no analysis can place or name an event.
CORE = ("ts_ns", "probe")
# Values that can only be >= 0; a negative one is made null.
NON_NEGATIVE = ("dur_ns", "size", "count", "cpu", "pid", "tid")
# Above this no one DMA mapping, duration or count is real (2**48: 256 TiB, 3 days
# in ns); such a value is made null so sums over a trace cannot overflow int64.
IMPOSSIBLE = 1 << 48


# ------------------------------------------------------------------ metadata


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nonneg_int(v) -> bool:
    return _int(v) and v >= 0


def _str(v) -> bool:
    return isinstance(v, str)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _dict(v) -> bool:
    return isinstance(v, dict)


def _bool(v) -> bool:
    return isinstance(v, bool)


# key -> (test, what it should be); a value failing its test is ignored (None).
FIELDS = {
    "tool": (_str, "a string"),
    "command": (_str_list, "a list of strings"),
    "follow": (_str, "a string"),
    "pid": (_int, "an integer"),
    "start_wall": (_str, "a string"),
    "end_wall": (_str, "a string"),
    "start_mono_ns": (_nonneg_int, "an integer >= 0"),
    "end_mono_ns": (_nonneg_int, "an integer >= 0"),
    "wall_minus_mono_ns": (_int, "an integer"),
    "exit_status": (_int, "an integer"),
    "stop_signal": (_int, "an integer"),
    "events_written": (_nonneg_int, "an integer >= 0"),
    "lost": (_nonneg_int, "an integer >= 0"),
    "finalized": (_bool, "true or false"),
    "hostname": (_str, "a string"),
    "buffer": (_str, "a string"),
    "addresses": (_str, "a string"),
    "kernel": (_dict, "an object"),
    "iommu": (_dict, "an object"),
    "headers": (_dict, "an object"),
    "workload": (_dict, "an object"),
    "probes": (lambda v: isinstance(v, list), "a list"),
    "counts": (_dict, "an object"),
    "drops": (_dict, "an object"),
    "stacks_lost": (_dict, "an object"),
    "mode": (_str, "a string"),
    "count": (_dict, "an object"),
    "columns": (_dict, "an object"),
}
# Inside the objects above: key -> test, for the keys analyses read.
NESTED = {
    "kernel": {"release": _str, "version": _str, "cmdline": _str},
    "iommu": {"mode": _str, "notes": _str_list},
    "headers": {"note": _str, "source": _str, "path": _str},
}
PROBE_KEYS = ("name", "status", "group", "op")


def decode_meta(raw: dict[bytes, bytes] | None, path: str) -> dict:
    """The metadata JSON as an object, or a TraceError saying what is wrong with it."""
    if not raw or META_KEY not in raw:
        raise TraceError(f"{path}: not an iommu-trace file (no {META_KEY.decode()} metadata)")
    constants = []  # NaN, Infinity: not JSON, and no field may hold them
    try:
        meta = json.loads(raw[META_KEY], parse_constant=lambda c: constants.append(c))
    except ValueError as e:  # UnicodeDecodeError is one
        raise TraceError(f"{path}: trace metadata is corrupt ({e})") from None
    if not isinstance(meta, dict):
        raise TraceError(
            f"{path}: trace metadata is corrupt (a {type(meta).__name__}, not an object)"
        )
    if constants:
        meta["_nonfinite"] = len(constants)
    if meta.get("format") != FORMAT:
        raise TraceError(f"{path}: not an iommu-trace file (format {meta.get('format')!r})")
    if "version" not in meta:
        raise TraceError(f"{path}: trace metadata has no format version")
    version = meta["version"]
    if not _int(version):
        raise TraceError(f"{path}: trace format version {version!r} is not an integer")
    if version <= 0:
        raise TraceError(f"{path}: trace format version {version} is invalid (versions start at 1)")
    if version > VERSION:
        raise TraceError(
            f"{path}: trace format version {version} is newer than this iommu-trace reads "
            f"({VERSION}); upgrade iommu-trace"
        )
    return meta


def check_meta(meta: dict, notes: list[str]) -> dict:
    """Fields of the wrong type dropped (one note naming them all)."""
    bad = []
    out = dict(meta)
    if out.pop("_nonfinite", 0):
        bad.append("values that are not finite numbers (read as null)")
    for key, (ok, want) in FIELDS.items():
        if key in out and out[key] is None:
            out.pop(key)  # absent and null mean the same; .get(key, default) then works
        elif key in out and not ok(out[key]):
            bad.append(f"{key} ({type(out[key]).__name__}, expected {want})")
            out.pop(key)
    for key, tests in NESTED.items():
        if isinstance(out.get(key), dict):
            sub = dict(out[key])
            for k, ok in tests.items():
                if k in sub and sub[k] is not None and not ok(sub[k]):
                    bad.append(f"{key}.{k} ({type(sub[k]).__name__})")
                    sub.pop(k)
            out[key] = sub
    if isinstance(out.get("probes"), list):
        good = [
            p
            for p in out["probes"]
            if isinstance(p, dict)
            and isinstance(p.get("name"), str)
            and all(isinstance(p.get(k, ""), str) for k in PROBE_KEYS)
        ]
        if len(good) != len(out["probes"]):
            bad.append(f"{len(out['probes']) - len(good)} malformed probes entries")
        out["probes"] = good
    for key in ("counts", "drops"):
        if isinstance(out.get(key), dict):
            kept = {k: v for k, v in out[key].items() if _nonneg_int(v)}
            if len(kept) != len(out[key]):
                bad.append(f"{len(out[key]) - len(kept)} {key} entries (not integers >= 0)")
            out[key] = kept
    start, end = out.get("start_mono_ns"), out.get("end_mono_ns")
    if start is not None and end is not None and end < start:
        bad.append("end_mono_ns (before start_mono_ns)")
        out.pop("end_mono_ns")
    if bad:
        notes.append("trace metadata ignored where malformed: " + "; ".join(bad))
    return out


# ------------------------------------------------------------------ events


def same_kind(got: pa.DataType, want: pa.DataType) -> bool:
    """Types another writer may use for a column: other int widths, floats, large strings."""
    t = pa.types
    if t.is_null(got):
        return True
    if t.is_integer(want):
        return t.is_integer(got) or t.is_floating(got)
    if t.is_string(want) and t.is_dictionary(got):  # a categorical column
        return same_kind(got.value_type, want)
    if t.is_string(want):
        return t.is_string(got) or t.is_large_string(got)
    if t.is_dictionary(want):  # version 2's low-cardinality strings
        inner = got.value_type if t.is_dictionary(got) else got
        return t.is_null(inner) or t.is_string(inner) or t.is_large_string(inner)
    if t.is_boolean(want):
        return t.is_boolean(got)
    if t.is_list(want):
        return (t.is_list(got) or t.is_large_list(got)) and same_kind(
            got.value_type, want.value_type
        )
    return False


def type_error(
    path: str, name: str, got: pa.DataType, want: pa.DataType, version: int
) -> TraceError:
    return TraceError(f"{path}: column {name} is {got}, format version {version} has {want}")


def _cast(
    col: pa.ChunkedArray, want: pa.DataType, name: str, path: str, notes: list[str], version: int
):
    """A column of another type brought to the version's type, where that loses nothing."""
    if col.type == want:
        return col
    if not same_kind(col.type, want):
        raise type_error(path, name, col.type, want, version)
    if pa.types.is_floating(col.type) and pa.types.is_integer(want):
        finite = pc.is_finite(col)
        bad = pc.sum(pc.invert(pc.fill_null(finite, True))).as_py() or 0
        col = pc.if_else(finite, col, pa.scalar(None, col.type))
        if bad:
            notes.append(f"column {name}: {bad} values that are not finite numbers made null")
    try:
        return col.cast(want, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise type_error(path, name, col.type, want, version) from None


def check_table(table: pa.Table, path: str, notes: list[str], version: int = VERSION) -> pa.Table:
    """The version's event columns with their types, in order; no row an analysis cannot take."""
    columns = EVENTS[version]
    names = set(table.column_names)
    missing = [n for n in columns if n not in names]
    absent = [n for n in CORE if n in missing]
    if absent:
        has = ", ".join(table.column_names[:6]) or "none"
        raise TraceError(
            f"{path}: not an iommu-trace event table (no {', '.join(absent)} column; it has {has})"
        )
    # Columns that later recorders added (nents, at_least) are null in older traces
    # by design; only a column every recorder wrote is worth a note when absent.
    noted = [n for n in missing if not (version == 1 and n in ADDED_LATER)]
    if noted:
        notes.append(f"columns absent from the trace (read as null): {', '.join(noted)}")
    cols = []
    for name, (want, _) in columns.items():
        if name in names:
            cols.append(_cast(table.column(name), want, name, path, notes, version))
        else:
            cols.append(pa.nulls(table.num_rows, want))
    t = pa.Table.from_arrays(cols, names=list(columns), metadata=table.schema.metadata)
    keep = pc.and_(pc.is_valid(t["ts_ns"]), pc.is_valid(t["probe"]))
    keep = pc.and_(keep, pc.fill_null(pc.greater_equal(t["ts_ns"], 0), False))
    dropped = t.num_rows - (pc.sum(keep).as_py() or 0)
    if dropped:
        t = t.filter(keep)
        notes.append(f"{dropped} events without a valid time or probe were dropped")
    t, fixed = _null_outside(t, {name: (0, IMPOSSIBLE) for name in NON_NEGATIVE})
    if fixed:
        notes.append("negative or impossibly large values made null: " + ", ".join(fixed))
    return t


def _null_outside(
    t: pa.Table, bounds: dict[str, tuple[int, int | None]]
) -> tuple[pa.Table, list[str]]:
    """Values outside [lo, hi] (hi None: no bound) made null; what was, as "N column"."""
    fixed = []
    for name, (lo, hi) in bounds.items():
        bad = pc.less(t[name], lo)
        if hi is not None:
            bad = pc.or_(bad, pc.greater(t[name], hi))
        bad = pc.fill_null(bad, False)
        n = pc.sum(bad).as_py() or 0
        if n:
            i = t.schema.get_field_index(name)
            t = t.set_column(i, name, pc.if_else(bad, pa.scalar(None, t[name].type), t[name]))
            fixed.append(f"{n} {name}")
    return t, fixed


def _typed(table: pa.Table, columns: dict, path: str, notes: list[str]) -> pa.Table:
    """These version-2 columns, in order, cast to their types; an absent one null."""
    cols = []
    for name, (want, _) in columns.items():
        if name in table.column_names:
            cols.append(_cast(table.column(name), want, name, path, notes, 2))
        else:
            cols.append(pa.nulls(table.num_rows, want))
    return pa.Table.from_arrays(cols, names=list(columns))


def check_stacks(table: pa.Table, path: str, notes: list[str]) -> pa.Table:
    """Version 2's stack rows: stack_id and frames typed; rows without an id dropped."""
    t = _typed(table, STACKS, path, notes)
    keep = pc.is_valid(t["stack_id"])
    dropped = t.num_rows - (pc.sum(keep).as_py() or 0)
    if dropped:
        notes.append(f"{dropped} stack rows without a stack_id were dropped")
        t = t.filter(keep)
    return t


def check_counts(table: pa.Table, path: str, notes: list[str]) -> pa.Table:
    """Count rows: COUNT_COLUMNS typed; a row without a probe, second or count (or with a
    negative or impossibly large one) dropped; impossible bytes or size buckets made null."""
    t = _typed(table, COUNTS, path, notes)
    keep = pc.is_valid(t["probe"])
    for name in ("second", "count"):
        ok = pc.and_(pc.greater_equal(t[name], 0), pc.less_equal(t[name], IMPOSSIBLE))
        keep = pc.and_(keep, pc.fill_null(ok, False))
    dropped = t.num_rows - (pc.sum(keep).as_py() or 0)
    if dropped:
        notes.append(f"{dropped} count rows without a valid probe, second or count were dropped")
        t = t.filter(keep)
    # bytes: a sum over events, so no one-event bound; negative is a u64 that wrapped
    t, fixed = _null_outside(t, {"bytes": (0, None), "size_bucket": (0, MAX_SIZE_BUCKET)})
    if fixed:
        notes.append("count rows: impossible values made null: " + ", ".join(fixed))
    return t


def check(path: str, raw_meta: dict[bytes, bytes] | None, table: pa.Table, notes: list[str]):
    """(metadata, event table) of a version-1 table, fit for the analyses, or a TraceError."""
    meta = check_meta(decode_meta(raw_meta, path), notes)
    return meta, check_table(table, path, notes, version=1)


def _finite_nonneg(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def valid_runs(runs) -> list[dict]:
    """A workload's runs that have a time window (t_start_ns <= t_end_ns) and sane numbers."""
    if not isinstance(runs, list):
        return []
    out = []
    for r in runs:
        if not isinstance(r, dict):
            continue
        t0, t1 = r.get("t_start_ns"), r.get("t_end_ns")
        if not (isinstance(t0, int) and isinstance(t1, int)):
            continue
        if not (_nonneg_int(t0) and _nonneg_int(t1) and t0 <= t1):
            continue
        nums = {
            k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if all(_finite_nonneg(v) for v in nums.values()):
            out.append(r)
    return out
