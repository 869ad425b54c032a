"""IOMMU PMU counts during `record`: opened before the workload, read once a second.

Each reading becomes one row of the trace: probe "<pmu>/<event>", group "pmu",
op "count", ts_ns the interval's start, dur_ns its length, count the events
counted in it (system-wide; filtered to the GPU's requester id where the PMU
can). meta["pmu"] says what was counted and what could not be.
"""

from __future__ import annotations

import glob
import os
import time

import pyarrow as pa

from ..system import pmu
from ..tracefile.schema import event_batch

NVIDIA = "0x10de"


def gpu_address(sysfs: str = "/sys/bus/pci/devices") -> str | None:
    """The first NVIDIA display/3D controller's PCI address, for the requester-id filter."""
    for dev in sorted(glob.glob(os.path.join(sysfs, "*"))):
        try:
            with open(os.path.join(dev, "vendor")) as f:
                vendor = f.read().strip()
            with open(os.path.join(dev, "class")) as f:
                cls = f.read().strip()
        except OSError:
            continue
        if vendor == NVIDIA and cls.startswith("0x03"):
            return os.path.basename(dev)
    return None


def start(software: tuple[str, ...] = (), enabled: bool = True) -> tuple[pmu.Sampler, dict]:
    """Open the counters; the sampler and the trace's meta["pmu"]."""
    pmus = pmu.discover() if enabled else []
    device = gpu_address() if pmus else None
    s = pmu.sampler(pmus, device, software)
    s.start(time.monotonic_ns())
    meta = {
        "pmus": [p.name for p in pmus],
        "device": device,
        "counters": [c.label for c in s.counters],
        "period_s": s.period_ns / 1e9,
        "notes": s.notes + ([] if pmus or not enabled else [pmu.NO_PMU_HINT]),
    }
    return s, meta


def batch(samples: list[tuple[int, int, str, int]]) -> pa.RecordBatch | None:
    """Counter samples as event rows (no CPU: a counter is system-wide)."""
    if not samples:
        return None
    t, dt, label, delta = (list(x) for x in zip(*samples, strict=True))
    n = len(samples)
    return event_batch({
        "ts_ns": pa.array(t, pa.int64()), "dur_ns": pa.array(dt, pa.int64()),
        "pid": pa.array([0] * n, pa.int32()), "tid": pa.array([0] * n, pa.int32()),
        "comm": pa.array([""] * n), "probe": pa.array(label),
        "group": pa.array(["pmu"] * n), "op": pa.array(["count"] * n),
        "count": pa.array(delta, pa.int64()),
    })  # fmt: skip
