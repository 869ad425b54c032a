"""The cost table `whatif` prices events with: T_IOMMU per call, per mode, measured.

`iommu-trace lab --costs FILE` writes it from a recording with the timing
probes (analysis.iommu_time), one mode at a time, merging into FILE; a user
may write one by hand for their own machine. JSON, seconds:

    {"format": "iommu-trace-costs", "version": 1,
     "modes": {"strict": {"map": Q, "unmap": Q},
               "lazy":   {"map": Q, "unmap": Q, "flush": Q}},
     "flush_queue": {"size": 256, "delay_s": Q},
     "sources": {"strict": "...", "lazy": "..."}}

where Q is {"p10": s, "median": s, "p90": s, "mean": s, "n": calls}: the
spread over single calls, so a prediction's range is n x [p10, p90].
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

FORMAT = "iommu-trace-costs"
IOVA_FQ_SIZE = 256  # include/linux/iova.h / dma-iommu.c on 6.1: entries per CPU queue
IOVA_FQ_TIMEOUT_S = 0.010  # the timer the kernel asks for
# The table measured in the lab from the committed timed fixtures (traces/lab/).
DEFAULT = "traces/lab/dd64k-timed-costs.json"
# DMA-API ops priced as maps and as unmaps (a coherent alloc maps, its free unmaps)
MAP_OPS = ("map", "alloc")
UNMAP_OPS = ("unmap", "free")


class CostsError(ValueError):
    """A cost table that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Quantiles:
    p10_s: float
    median_s: float
    p90_s: float
    mean_s: float
    n: int

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> Quantiles:
        a = np.asarray(seconds, dtype=float)
        if not len(a):
            raise CostsError("no measurement to take a cost from")
        q = np.percentile(a, [10, 50, 90])
        return cls(float(q[0]), float(q[1]), float(q[2]), float(a.mean()), len(a))

    def as_json(self) -> dict:
        return {"p10": self.p10_s, "median": self.median_s, "p90": self.p90_s,
                "mean": self.mean_s, "n": self.n}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict, where: str) -> Quantiles:
        try:
            vals = [float(d[k]) for k in ("p10", "median", "p90")]
        except (KeyError, TypeError, ValueError):
            raise CostsError(f"{where}: want p10, median and p90 in seconds") from None
        if not (0 <= vals[0] <= vals[1] <= vals[2]):
            raise CostsError(f"{where}: want 0 <= p10 <= median <= p90")
        p10, median, p90 = vals
        return cls(p10, median, p90, float(d.get("mean", median)), int(d.get("n", 0)))


ZERO = Quantiles(0.0, 0.0, 0.0, 0.0, 0)


@dataclass(frozen=True)
class ModeCosts:
    map: Quantiles
    unmap: Quantiles
    flush: Quantiles = ZERO  # lazy: one flush-queue drain, outside any call


@dataclass(frozen=True)
class FlushQueue:
    size: int = IOVA_FQ_SIZE
    delay_p10_s: float = IOVA_FQ_TIMEOUT_S
    delay_mean_s: float = IOVA_FQ_TIMEOUT_S  # the count's point estimate: T / (mean delay + gap)
    delay_p90_s: float = IOVA_FQ_TIMEOUT_S


@dataclass(frozen=True)
class Costs:
    source: str
    modes: dict[str, ModeCosts]
    flush_queue: FlushQueue = field(default_factory=FlushQueue)
    raw: dict = field(default_factory=dict, repr=False)

    def mode(self, name: str) -> ModeCosts:
        if name == "passthrough":
            return ModeCosts(ZERO, ZERO)
        if name not in self.modes:
            raise CostsError(
                f"{self.source}: no {name} costs (measure them: sudo iommu-trace lab --mode "
                f"{name} -o {name}.iot --costs {self.source})"
            )
        return self.modes[name]


def parse(doc: dict, source: str) -> Costs:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CostsError(f"{source}: not an iommu-trace cost table (format {FORMAT!r} missing)")
    modes = {}
    for name, m in (doc.get("modes") or {}).items():
        if name not in ("strict", "lazy"):
            raise CostsError(f"{source}: unknown mode {name!r} (strict or lazy)")
        q = {
            k: Quantiles.from_json(m.get(k, {}), f"{source}: {name}.{k}") for k in ("map", "unmap")
        }
        flush = Quantiles.from_json(m["flush"], f"{source}: lazy.flush") if "flush" in m else ZERO
        modes[name] = ModeCosts(q["map"], q["unmap"], flush)
    fq = doc.get("flush_queue") or {}
    d = (
        Quantiles.from_json(fq["delay_s"], f"{source}: flush_queue.delay_s")
        if "delay_s" in fq
        else None
    )
    queue = FlushQueue(
        int(fq.get("size", IOVA_FQ_SIZE)),
        *((d.p10_s, d.mean_s, d.p90_s) if d else (IOVA_FQ_TIMEOUT_S,) * 3),
    )
    return Costs(source, modes, queue, doc)


def load(path: str | None) -> Costs:
    if path is None:
        pkg = resources.files(__package__.rpartition(".")[0])
        text = pkg.joinpath(DEFAULT).read_text()
        return parse(json.loads(text), DEFAULT)
    try:
        with open(path) as f:
            doc = json.load(f)
    except ValueError as e:
        raise CostsError(f"{path}: not JSON ({e})") from None
    return parse(doc, path)


def measure(trace, mode: str) -> dict:
    """This mode's entry of a cost table, from a trace recorded with the timing probes."""
    from . import events as E
    from . import iommu_time as it

    t = it.build(trace)
    if not t.measured:
        raise CostsError(f"{trace.path}: {t.unmeasured[0]}")
    runs = E.workload_runs(trace)
    lo, hi = (runs[0]["t_start_ns"], runs[-1]["t_end_ns"]) if runs else (0, 1 << 62)
    calls = [c for c in t.calls if lo <= c.ts_ns < hi] or t.calls
    entry = {}
    for kind, ops in (("map", MAP_OPS), ("unmap", UNMAP_OPS)):
        entry[kind] = Quantiles.of([c.t_iommu_ns / 1e9 for c in calls if c.op in ops]).as_json()
    out = {"costs": entry}
    if mode == "lazy":
        ev = trace.frame(["ts_ns", "dur_ns", "probe"])
        timer = ev[(ev["probe"] == "t_fq_timer") & ev["dur_ns"].notna()]
        entry["flush"] = Quantiles.of(timer["dur_ns"].astype("int64").to_numpy() / 1e9).as_json()
        out["delay_s"] = Quantiles.of(timer_delays(trace)).as_json()
    return out


def timer_delays(trace) -> list[float]:
    """Seconds from the unmap that armed the flush-queue timer to the timer's flush."""
    ev = trace.frame(["ts_ns", "dur_ns", "probe", "group", "op"])
    fires = ev.loc[ev["probe"] == "fq_flush_timeout", "ts_ns"].astype("int64").to_numpy()
    um = ev[(ev["group"] == "dma") & ev["op"].isin(list(UNMAP_OPS))]
    queued = (um["ts_ns"] + um["dur_ns"].fillna(0)).astype("int64").to_numpy()
    queued = np.sort(queued)
    out, prev = [], 0
    for f in np.sort(fires):
        i = np.searchsorted(queued, prev, side="right")
        if i < len(queued) and queued[i] < f:
            out.append((f - queued[i]) / 1e9)
        prev = f
    return out


def merge(path: str, mode: str, measured: dict, source: str) -> None:
    """Put one mode's measured costs into the table at PATH (made if absent)."""
    doc: dict = {"format": FORMAT, "version": 1, "modes": {}, "flush_queue": {"size": IOVA_FQ_SIZE}}
    if os.path.exists(path):
        doc = load(path).raw
    doc.setdefault("modes", {})[mode] = measured["costs"]
    if "delay_s" in measured:
        doc.setdefault("flush_queue", {"size": IOVA_FQ_SIZE})["delay_s"] = measured["delay_s"]
    doc.setdefault("sources", {})[mode] = source
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
