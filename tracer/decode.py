"""Turn raw BPF events into trace rows, a batch at a time.

The buffer callback only copies the event's bytes and resolves its stacks
(which must happen while the process lives: each distinct stack is symbolized
once, then numbered; the trace stores the number per event and the frames
once); columns are built with numpy at flush time. This keeps the per-event
Python work to a few microseconds, which is what bounds the event rate the
recorder sustains.
"""

from __future__ import annotations

import ctypes as ct
import struct

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
_HEAD = struct.Struct("<I4xIii")  # pid, probe, kstack, ustack
_HEAD_OFFSET = EVENT_DTYPE.fields["pid"][1]  # type: ignore[index]  # a struct dtype has fields
UNKNOWN = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # program.c's UNKNOWN: stored as null


def _strings(values: np.ndarray) -> pa.Array:
    """Fixed-width C strings to an Arrow string column, decoding each distinct value once."""
    uniq, inverse = np.unique(values, return_inverse=True)
    names = pa.array([u.decode(errors="replace") for u in uniq], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), names)


class EventBatcher:
    def __init__(self, resolved: list[Resolution], sym: Symbolizer, keep_addresses: bool):
        self._sym = sym
        self._raw: list[bytes] = []
        self._kstacks: list[int] = []  # the trace's stack ids (-1: none)
        self._ustacks: list[int] = []
        self._ids: dict[tuple[str, ...], int] = {}  # frames -> the trace's stack id
        self._new: list[tuple[int, list[str]]] = []  # stacks not journaled yet
        self._pseud = None if keep_addresses else Pseudonymizer()
        n = len(resolved)
        self._names = pa.array([r.probe.name for r in resolved], pa.string())
        self._groups = pa.array([r.probe.group for r in resolved], pa.string())
        self._ops = pa.array([r.probe.op for r in resolved], pa.string())
        self._paired = np.zeros(n, bool)
        self._has_dev = np.zeros(n, bool)
        self._has = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        # columns besides addr/iova that hold addresses (the catalog's `addresses`)
        self._pfn = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        self._pointer = {c: np.zeros(n, bool) for c in NUMERIC_FIELDS}
        self._walks = np.zeros(n, bool)  # fills size by walking a scatter list
        self.exec_probes: set[int] = set()
        for i, r in enumerate(resolved):
            if r.probe.op == "exec":
                self.exec_probes.add(i)
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
        return len(self._raw)

    def add(self, data: int, size: int) -> None:
        """The buffer callback's work: copy the bytes, resolve stacks now."""
        raw = ct.string_at(data, EVENT_DTYPE.itemsize)
        pid, probe, kstack, ustack = _HEAD.unpack_from(raw, _HEAD_OFFSET)
        if probe in self.exec_probes:
            self._sym.forget(pid)  # a new address space: cached symbols are wrong now
        self._raw.append(raw)
        self._kstacks.append(self._id(self._sym.kernel(kstack)) if kstack >= 0 else -1)
        self._ustacks.append(self._id(self._sym.user(pid, ustack)) if ustack >= 0 else -1)

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

    def take(self) -> pa.RecordBatch | None:
        if not self._raw:
            return None
        ev = np.frombuffer(b"".join(self._raw), EVENT_DTYPE)
        probe = ev["probe"].astype(np.int64)
        cols: dict[str, pa.Array] = {
            "ts_ns": pa.array(ev["ts"].view(np.int64)),
            "dur_ns": pa.array(ev["dur"].view(np.int64), mask=~self._paired[probe]),
            "cpu": pa.array(ev["cpu"].astype(np.int32)),
            "pid": pa.array(ev["pid"].astype(np.int32)),
            "tid": pa.array(ev["tid"].astype(np.int32)),
            "comm": _strings(ev["comm"]),
            "probe": self._names.take(probe),
            "group": self._groups.take(probe),
            "op": self._ops.take(probe),
        }
        dev = _strings(ev["dev"])
        cols["dev"] = pa.DictionaryArray.from_arrays(
            pa.array(dev.indices.to_numpy(), mask=~self._has_dev[probe]), dev.dictionary
        )
        for j, c in enumerate(NUMERIC_FIELDS):
            v = ev["v"][:, j].copy()
            present = self._has[c][probe]
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
            cols[c] = pa.array(v.view(np.int64), mask=~present)
        cols["at_least"] = pa.array(ev["at_least"] != 0, mask=~self._walks[probe])
        for name, ids in (("kstack_id", self._kstacks), ("ustack_id", self._ustacks)):
            a = np.asarray(ids, np.int32)
            cols[name] = pa.array(a, mask=a < 0)
        self._raw.clear()
        self._kstacks.clear()
        self._ustacks.clear()
        return event_batch(cols)
