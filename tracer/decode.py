"""Turn raw BPF events into trace rows, a chunk at a time, with no Python per event.

Events arrive in chunks: a numpy array of records copied out of the ring
buffer (tracer/ringbuf.py), or the bytes BCC's callback copied (perf buffer).
Each chunk's stacks are resolved when it arrives, while the processes live:
the distinct (kernel stack id) and (process, user stack id) pairs of the chunk
(np.unique), symbolized only when not seen before, each distinct frame list
numbered once (the trace stores the number per event and the frames once).
The chunk's columns are built with numpy while its records are still in the
CPU's cache (a column at a time over 176-byte records touches every record
again), in groups of at least DECODE_ROWS; a journaled batch concatenates them.

BPF stack ids are stable: the stack map is created without
BPF_F_REUSE_STACKID, so a bucket keeps its first stack for the whole
recording and a colliding stack gets -EEXIST (a null stack id, counted per
probe in the kernel: program.c's stack_errors) instead of overwriting it. A
cached id can therefore never name another stack. User stack ids are
addresses, which mean other functions after an exec: a process's cached user
stacks are forgotten at its exec event, and the events after it are resolved
anew.
"""

from __future__ import annotations

import ctypes as ct

import numpy as np
import pyarrow as pa

from ..probes.catalog import NUMERIC_FIELDS
from ..probes.discover import Resolution
from ..tracefile.schema import ADDRESS_COLUMNS, event_batch, stack_batch
from .addresses import Pseudonymizer
from .symbols import Symbolizer

# Mirrors struct event in program.c.
EVENT_DTYPE = np.dtype(
    [
        ("ts", "<u8"),
        ("dur", "<u8"),
        ("v", "<u8", (len(NUMERIC_FIELDS),)),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("probe", "<u4"),
        ("kstack", "<i4"),
        ("ustack", "<i4"),
        ("cpu", "<u4"),
        ("at_least", "<u4"),
        ("pad", "<u4"),
        ("comm", "S16"),
        ("dev", "S32"),
    ]
)
UNKNOWN = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # program.c's UNKNOWN: stored as null


_HASH = np.uint64(0x9E37_79B9_7F4A_7C15)

# Chunks are decoded in groups of at least this many events: each numpy call
# costs microseconds whatever its size, and the ring may hand over a handful.
DECODE_ROWS = 4096


def _unique(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(a, return_index=True, return_inverse=True), without the sort where every
    value is the first (a chunk of one thread's events usually is)."""
    if len(a) and (a == a[0]).all():
        return a[:1], np.zeros(1, np.intp), np.zeros(len(a), np.intp)
    return np.unique(a, return_index=True, return_inverse=True)


class _Strings:
    """A fixed-width C string column as codes into the distinct values seen so far."""

    def __init__(self) -> None:
        self._codes: dict[bytes, int] = {}
        self.names: list[str] = []

    def codes(self, values: np.ndarray) -> np.ndarray:
        """np.unique on the strings sorts them (~250 ns an event); instead the 8-byte
        words of each value are hashed to one u64 and those made unique, then every
        value is compared with its group's first, so a hash collision cannot merge two
        strings (it takes the exact path)."""
        words = np.ascontiguousarray(values).view("<u8").reshape(len(values), -1)
        h = words[:, 0].copy()
        for j in range(1, words.shape[1]):
            h = h * _HASH + words[:, j]
        _, first, inverse = _unique(h)
        if not (words == words[first][inverse]).all():
            _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        table = np.array([self._code(v) for v in values[first].tolist()], np.int32)
        return table[inverse]

    def _code(self, v: bytes) -> int:
        code = self._codes.get(v)
        if code is None:
            code = self._codes[v] = len(self.names)
            self.names.append(v.decode(errors="replace"))
        return code

    def column(self, codes: np.ndarray, mask: np.ndarray | None = None) -> pa.DictionaryArray:
        """A dictionary column of the values these codes use."""
        used = np.zeros(len(self.names), bool)
        used[codes if mask is None else codes[~mask]] = True
        remap = (np.cumsum(used) - 1).astype(np.int32)
        names = pa.array([self.names[i] for i in np.flatnonzero(used).tolist()], pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(remap[codes], mask=mask), names)


def _coded(values: list[str]) -> tuple[np.ndarray, pa.Array]:
    """Per-probe codes into a dictionary of the distinct values."""
    uniq = sorted(set(values))
    return np.array([uniq.index(v) for v in values], np.int32), pa.array(uniq, pa.string())


class EventBatcher:
    def __init__(self, resolved: list[Resolution], sym: Symbolizer, keep_addresses: bool):
        self._sym = sym
        self._raw: list[np.ndarray] = []  # chunks whose stacks are resolved, not yet decoded
        self._raw_ids: list[tuple[np.ndarray, np.ndarray]] = []  # their stack ids
        self._raw_rows = 0
        self._cols: dict[str, list[np.ndarray]] = {}  # decoded groups, per column
        self._rows = 0
        self._pending: list[bytes] = []  # BCC callback's copies, not yet a chunk
        self._ids: dict[tuple[str, ...], int] = {}  # frames -> the trace's stack id
        self._kernel_ids: dict[int, int] = {}  # BPF kernel stack id -> the trace's stack id
        self._new: list[tuple[int, list[str]]] = []  # stacks not journaled yet
        self._pseud = None if keep_addresses else Pseudonymizer()
        self._comm, self._dev = _Strings(), _Strings()
        n = len(resolved)
        self._dicts = {
            col: _coded([getattr(r.probe, col) for r in resolved])
            for col in ("name", "group", "op")
        }
        self._paired = np.zeros(n, bool)
        self._has_dev = np.zeros(n, bool)
        self._has = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        # columns besides addr/iova that hold addresses (the catalog's `addresses`)
        self._pfn = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        self._pointer = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        self._walks = np.zeros(n, bool)  # fills size by walking a scatter list
        self._exec = np.zeros(n, bool)  # a new address space: cached user symbols are wrong now
        for i, r in enumerate(resolved):
            self._exec[i] = r.probe.op == "exec"
            for c, kind in r.probe.addresses.items():
                (self._pfn if kind == "pfn" else self._pointer)[c][i] = True
            if r.target is None:
                continue
            self._paired[i] = r.target.ret or r.target.kind == "syscall"
            self._has_dev[i] = "dev" in r.target.fields
            self._walks[i] = any(
                s.startswith(("sg_len:", "sg_dma_len:")) for s in r.target.fields.values()
            )
            for c in r.target.fields:
                if c != "dev":
                    self._has[c][i] = True

    def __len__(self) -> int:
        return self._rows + self._raw_rows + len(self._pending)

    def add(self, data: int, size: int) -> None:
        """BCC's buffer callback (perf buffer): copy the bytes, nothing else."""
        self._pending.append(ct.string_at(data, EVENT_DTYPE.itemsize))

    def commit(self) -> None:
        """After a BCC poll: the events its callbacks copied, as one chunk."""
        if self._pending:
            ev = np.frombuffer(b"".join(self._pending), EVENT_DTYPE)
            self._pending.clear()
            self.add_records(ev)

    def add_records(self, ev: np.ndarray) -> None:
        """A chunk of events in buffer order (any dtype with EVENT_DTYPE's fields)."""
        if not len(ev):
            return
        pid, ustack = ev["pid"], ev["ustack"]
        uids = np.full(len(ev), -1, np.int32)
        start = 0
        for i in [*np.flatnonzero(self._exec[ev["probe"]]).tolist(), len(ev)]:
            if i > start:
                uids[start:i] = self._user_ids(pid[start:i], ustack[start:i])
            if i < len(ev):
                self._sym.forget(int(pid[i]))  # the exec event's own stack is the new image's
            start = i
        self._raw.append(ev)
        self._raw_ids.append((self._kernel_stack_ids(ev["kstack"]), uids))
        self._raw_rows += len(ev)
        if self._raw_rows >= DECODE_ROWS:
            self._decode()

    def _kernel_stack_ids(self, k: np.ndarray) -> np.ndarray:
        out = np.full(len(k), -1, np.int32)
        has = k >= 0
        if has.any():
            uniq, _, inverse = _unique(k[has])
            out[has] = np.array([self._kernel_id(s) for s in uniq.tolist()], np.int32)[inverse]
        return out

    def _kernel_id(self, stack_id: int) -> int:
        sid = self._kernel_ids.get(stack_id)
        if sid is None:
            sid = self._kernel_ids[stack_id] = self._id(self._sym.kernel(stack_id))
        return sid

    def _user_ids(self, pid: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = np.full(len(u), -1, np.int32)
        has = u >= 0
        if has.any():
            key = (pid[has].astype(np.int64) << 32) | u[has].astype(np.int64)
            uniq, _, inverse = _unique(key)
            ids = [self._id(self._sym.user(k >> 32, k & 0xFFFF_FFFF)) for k in uniq.tolist()]
            out[has] = np.array(ids, np.int32)[inverse]
        return out

    def _id(self, frames: list[str] | None) -> int:
        """The trace's id for these frames; new ones are journaled with the next batch.

        BPF stack ids are per address space (the same id means other frames in
        another process), so the trace numbers distinct frame lists itself.
        """
        if frames is None:
            return -1
        key = tuple(frames)
        sid = self._ids.get(key)
        if sid is None:
            sid = self._ids[key] = len(self._ids)
            self._new.append((sid, frames))
        return sid

    def take_stacks(self) -> pa.RecordBatch | None:
        """Stacks first seen since the last call, as stack rows."""
        if not self._new:
            return None
        ids, frames = zip(*self._new, strict=True)
        self._new.clear()
        return stack_batch(list(ids), list(frames))

    def _put(self, name: str, values: np.ndarray) -> None:
        self._cols.setdefault(name, []).append(values)

    def _decode(self) -> None:
        """The undecoded chunks as numpy columns (a value array, and `name!` the null mask)."""
        if not self._raw_rows:
            return
        if len(self._raw) == 1:
            ev = self._raw[0]
        else:  # as bytes: numpy copies a record type field by field, ~5x slower
            ev = np.concatenate([c.view(np.uint8) for c in self._raw]).view(self._raw[0].dtype)
        kids = np.concatenate([k for k, _ in self._raw_ids])
        uids = np.concatenate([u for _, u in self._raw_ids])
        self._raw, self._raw_ids, n, self._raw_rows = [], [], self._raw_rows, 0
        probe = ev["probe"].astype(np.intp)
        put = self._put
        put("probe", probe.astype(np.int32))
        put("ts_ns", ev["ts"].view(np.int64))
        put("dur_ns", ev["dur"].view(np.int64))
        put("cpu", ev["cpu"].astype(np.int32))
        put("pid", ev["pid"].astype(np.int32))
        put("tid", ev["tid"].astype(np.int32))
        put("comm", self._comm.codes(ev["comm"]))
        has_dev = self._has_dev[probe]
        put("dev", self._dev.codes(ev["dev"]) if has_dev.any() else np.zeros(n, np.int32))
        values = ev["v"]
        for j, c in enumerate(NUMERIC_FIELDS):
            present = self._has[c][probe]
            if not present.any():  # a column no probe of this chunk fills: all null
                # both arrays even so: a batch of several chunks concatenates each
                # column's chunks, and the values must stay as long as their mask
                put(c, np.zeros(n, np.int64))
                put(c + "!", present)
                continue
            v = values[:, j].copy()
            if c != "ret":
                present = present & (v != UNKNOWN)
            if self._pseud is not None and present.any():
                if c in ADDRESS_COLUMNS:
                    v[present] = self._pseud(c, v[present])
                else:  # IOVA page numbers go with the IOVAs, pointers with CPU addresses
                    pfn = present & self._pfn[c][probe]
                    if pfn.any():
                        v[pfn] = self._pseud.pfn("iova", v[pfn])
                    ptr = present & self._pointer[c][probe]
                    if ptr.any():
                        v[ptr] = self._pseud.pointer("addr", v[ptr])
            put(c, v.view(np.int64))
            put(c + "!", present)
        put("at_least", ev["at_least"] != 0)
        put("kstack_id", kids)
        put("ustack_id", uids)
        self._rows += n

    def take(self) -> pa.RecordBatch | None:
        self.commit()
        self._decode()
        if not self._rows:
            return None
        col = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in self._cols.items()}
        self._cols, self._rows = {}, 0
        probe = col["probe"].astype(np.intp)
        cols: dict[str, pa.Array] = {
            "ts_ns": pa.array(col["ts_ns"]),
            "dur_ns": pa.array(col["dur_ns"], mask=~self._paired[probe]),
            "cpu": pa.array(col["cpu"]),
            "pid": pa.array(col["pid"]),
            "tid": pa.array(col["tid"]),
            "comm": self._comm.column(col["comm"]),
        }
        for name, key in (("probe", "name"), ("group", "group"), ("op", "op")):
            per_probe, names = self._dicts[key]
            cols[name] = pa.DictionaryArray.from_arrays(pa.array(per_probe[probe]), names)
        has_dev = self._has_dev[probe]
        if has_dev.any():
            cols["dev"] = self._dev.column(col["dev"], mask=~has_dev)
        for c in NUMERIC_FIELDS:
            present = col[c + "!"]
            if present.any():
                cols[c] = pa.array(col[c], mask=~present)
        walks = self._walks[probe]
        if walks.any():
            cols["at_least"] = pa.array(col["at_least"], mask=~walks)
        for name in ("kstack_id", "ustack_id"):
            ids = col[name]
            cols[name] = pa.array(ids, mask=ids < 0)
        return event_batch(cols)
