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
from ..tracefile.schema import SCHEMA

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
    if not samples:
        return None
    rows = [
        {"ts_ns": t, "dur_ns": dt, "cpu": -1, "pid": 0, "tid": 0, "comm": "", "probe": label,
         "group": "pmu", "op": "count", "count": delta}
        for t, dt, label, delta in samples
    ]  # fmt: skip
    return pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
