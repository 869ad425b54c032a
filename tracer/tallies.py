"""`record --count`: the kernel's per-CPU count map (program.c's tallies) as count rows.

The map is read once, after the programs were told to stop counting (program.c's
control[1]: the probes stay attached, and come down after, as in an event
recording), so what it holds and the per-probe counters agree: every event
counted is in one key's count, or in `tally_errors` where the map refused a
new key. The CPUs' copies of a key are
summed here, with numpy; keys are read in one batch lookup where the kernel
has them (5.6+), else one by one through BCC.
"""

from __future__ import annotations

import ctypes as ct
import errno

import numpy as np
import pyarrow as pa

from ..probes.discover import Resolution
from ..tracefile.schema import count_batch

# Mirrors struct tally_key and struct tally in program.c.
KEY_DTYPE = np.dtype(
    [
        ("probe", "<u4"),
        ("second", "<u4"),
        ("size_bucket", "<u2"),  # 0: no size; else 1 + the row's size_bucket
        ("at_least", "<u2"),
        ("pad", "<u4"),
        ("dev", "S32"),
    ]
)
VALUE_DTYPE = np.dtype([("count", "<u8"), ("bytes", "<u8")])

# The map's default size. A key is (probe, device, size bucket, second): a probe
# firing for one device in ten size buckets takes 10 a second, so this holds
# such a probe for 3.6 hours, or 40 of them for 5 minutes. Preallocated: ~160 bytes
# a key on 2 CPUs, 2.2 KB on 128 (the per-CPU values), 285 MB there in all.
COUNT_ENTRIES = 131_072
KEY_OVERHEAD_BYTES = 128  # the kernel's htab_elem and the key, per entry


def map_bytes(entries: int, cpus: int) -> int:
    """What a preallocated per-CPU hash of this many entries takes, roughly."""
    return entries * (KEY_OVERHEAD_BYTES + VALUE_DTYPE.itemsize * cpus)


# Keys read per batch: the buffers are this many keys' values on every CPU (8 MiB on 128).
BATCH_KEYS = 4096


def _batch_lookup(fd: int, cpus: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Every key and its per-CPU values by BPF_MAP_LOOKUP_BATCH; None where unsupported."""
    from bcc.libbcc import lib  # noqa: PLC0415 - only the recorder imports BCC

    keys, values = [], []
    token, first = ct.c_uint32(0), True
    while True:
        k = np.zeros(BATCH_KEYS, KEY_DTYPE)
        v = np.zeros((BATCH_KEYS, cpus), VALUE_DTYPE)
        n = ct.c_uint32(BATCH_KEYS)
        rc = lib.bpf_lookup_batch(
            fd, None if first else ct.byref(token), ct.byref(token),
            k.ctypes.data, v.ctypes.data, ct.byref(n),
        )  # fmt: skip
        err = ct.get_errno() if rc else 0
        if rc and err != errno.ENOENT:
            if first and err in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, 524):
                return None  # 524: ENOTSUPP, the kernel's own
            raise OSError(err, f"reading the count map: {errno.errorcode.get(err, err)}")
        keys.append(k[: n.value])
        values.append(v[: n.value])
        first = False
        if rc or n.value == 0:  # ENOENT: the last keys came with this call
            break
    return np.concatenate(keys), np.concatenate(values)


def _one_by_one(table) -> tuple[np.ndarray, np.ndarray]:
    items = list(table.items())
    cpus = table.total_cpu
    keys = np.zeros(len(items), KEY_DTYPE)
    values = np.zeros((len(items), cpus), VALUE_DTYPE)
    for i, (k, v) in enumerate(items):
        keys[i] = np.frombuffer(bytes(k), KEY_DTYPE)[0]
        values[i] = np.frombuffer(bytes(v), VALUE_DTYPE, count=cpus)
    return keys, values


def read_map(table) -> tuple[np.ndarray, np.ndarray]:
    """(keys, [count, bytes] summed over the CPUs) of the BCC PerCpuHash `tallies`."""
    got = _batch_lookup(table.map_fd, table.total_cpu)
    keys, values = got if got is not None else _one_by_one(table)
    summed = np.stack(
        [
            values["count"].sum(axis=1, dtype=np.uint64),
            values["bytes"].sum(axis=1, dtype=np.uint64),
        ],
        axis=1,
    )
    return keys, summed


def rows(keys: np.ndarray, summed: np.ndarray, resolved: list[Resolution]) -> pa.RecordBatch:
    """Count rows (schema.count_batch) from the map's keys and summed values, in order of
    probe, second, device and size bucket (the map's order is its hash's)."""
    order = np.lexsort((keys["size_bucket"], keys["dev"], keys["second"], keys["probe"]))
    keys, summed = keys[order], summed[order]
    probe = keys["probe"].astype(np.intp)
    names = [r.probe.name for r in resolved]
    per = {c: np.array([getattr(r.probe, c) for r in resolved], object) for c in ("group", "op")}
    has_dev = np.array([r.target is not None and "dev" in r.target.fields for r in resolved], bool)
    walks = np.array(
        [
            r.target is not None
            and any(s.startswith(("sg_len:", "sg_dma_len:")) for s in r.target.fields.values())
            for r in resolved
        ],
        bool,
    )
    dev = [d.decode(errors="replace") for d in keys["dev"].tolist()]
    bucket = keys["size_bucket"].astype(np.int32)
    return count_batch(
        {
            "probe": pa.array([names[i] for i in probe.tolist()], pa.string()),
            "group": pa.array(per["group"][probe].tolist(), pa.string()),
            "op": pa.array(per["op"][probe].tolist(), pa.string()),
            # null where the probe has no device field, as in an event trace
            "dev": pa.array(dev, pa.string(), mask=~has_dev[probe]),
            "size_bucket": pa.array(bucket - 1, pa.int32(), mask=bucket == 0),
            "second": pa.array(keys["second"].astype(np.int32)),
            "count": pa.array(summed[:, 0].view(np.int64)),
            "bytes": pa.array(summed[:, 1].view(np.int64), mask=bucket == 0),
            "at_least": pa.array(keys["at_least"] != 0, mask=~walks[probe]),
        }
    )


def errors(table, resolved: list[Resolution]) -> tuple[dict[str, int], dict[str, int]]:
    """Per attached probe, updates the map refused: (full, other errors); zeros left out."""
    full: dict[str, int] = {}
    other: dict[str, int] = {}
    for i, r in enumerate(resolved):
        if r.status != "attach":
            continue
        for j, out in enumerate((full, other)):
            n = int(sum(table[ct.c_int(i * 2 + j)]))
            if n:
                out[r.probe.name] = n
    return full, other
