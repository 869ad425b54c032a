"""A FlexGen trace split into setup, prefill and decode: DMA events and copies per token.

The windows come from examples/flexgen_run.py, which writes FlexGen's own
per-step timer stamps (step 0 is the prefill, steps 1.. decode one token each
for the whole batch) in CLOCK_MONOTONIC ns to TRACE.workload.json, or into the
trace's `workload` metadata with `record --workload-result`.

    from iommu_trace.analysis import phases
    from iommu_trace.render import phases as rp
    wl, ev = phases.load_workload(trace), trace.frame()
    table = phases.split(ev, trace.metadata, wl)
    print(rp.text(path, table, wl, phases.map_steps(ev, trace.metadata, wl)))

`iommu-trace overhead --phases TRACE` prints it (and `report --phases` may call it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..tracefile import sidecar
from ..tracefile.meta import TraceMeta
from ..tracefile.reader import Trace
from ..tracefile.sidecar import SidecarError
from .overhead_data import category_probes
from .taxonomy import COST_CATEGORIES

HOST_ALLOC_PROBES = ("cuMemHostAlloc", "cuMemAllocHost", "cuMemHostRegister")  # driver layer:
RUNTIME_HOST_ALLOC = ("cudaHostAlloc", "cudaMallocHost", "cudaHostRegister")  # one per call
MEMCPY_KIND = {1: "h2d", 2: "d2h", 3: "d2d"}  # cudaMemcpyKind


class PhaseError(ValueError):
    """No phase windows for this trace; one line for the user."""


@dataclass
class Phase:
    name: str
    t_start_ns: int
    t_end_ns: int
    steps: int
    tokens: int  # prompt tokens for prefill, generated tokens for decode
    token_kind: str


def load_workload(trace: Trace) -> dict:
    try:
        wl = trace.workload()
    except SidecarError as e:
        raise PhaseError(str(e)) from None
    steps = sidecar.generation_steps(wl)
    if steps is not None:
        return {**wl, "steps": steps}
    raise PhaseError(
        f"{trace.path}: no phase windows (record examples/flexgen_run.py, which writes them "
        "to TRACE.workload.json)"
    )


def windows(wl: dict) -> list[Phase]:
    steps = wl["steps"]
    if not steps:
        raise PhaseError("the workload results hold no generation steps")
    batch = int(wl.get("batch", 1))
    first, last = steps[0], steps[-1]
    out = [
        Phase(
            "setup", int(wl.get("t_start_ns", first["t_start_ns"])), first["t_start_ns"], 0, 0, ""
        ),
        Phase(
            "prefill",
            first["t_start_ns"],
            first["t_end_ns"],
            1,
            batch * int(wl.get("prompt_len", 0)),
            "prompt",
        ),
    ]
    if len(steps) > 1:
        out.append(
            Phase(
                "decode",
                steps[1]["t_start_ns"],
                last["t_end_ns"],
                len(steps) - 1,
                batch * (len(steps) - 1),
                "generated",
            )
        )
    out.append(
        Phase("teardown", last["t_end_ns"], int(wl.get("t_end_ns", last["t_end_ns"])), 0, 0, "")
    )
    return out


def copy_probes(meta: TraceMeta) -> list[str]:
    """Per-copy probes of one layer (runtime if attached, else driver), so no copy counts twice."""
    calls = [p for p in meta.attached.values() if "Memcpy" in p.name and p.op == "call"]
    rt = [p.name for p in calls if p.group == "cuda-runtime"]
    return rt or [p.name for p in calls if p.group == "cuda-driver"]


def split(events: pd.DataFrame, meta: TraceMeta, wl: dict) -> pd.DataFrame:
    """One row per phase: seconds, steps, tokens, event counts, pinned allocations, copies."""
    att = meta.attached
    cats = category_probes(meta)
    allocs = [p for p in HOST_ALLOC_PROBES if p in att]
    allocs = allocs or [p for p in RUNTIME_HOST_ALLOC if p in att]
    copies = copy_probes(meta)
    ts = events["ts_ns"].to_numpy(dtype="int64", na_value=0)
    probe = events["probe"].to_numpy(dtype=object, na_value="")
    rows = []
    for ph in windows(wl):
        inw = (ts >= ph.t_start_ns) & (ts < ph.t_end_ns)
        row = {
            "phase": ph.name,
            "seconds": (ph.t_end_ns - ph.t_start_ns) / 1e9,
            "steps": ph.steps,
            "tokens": ph.tokens,
            "token_kind": ph.token_kind,
        }
        for c in COST_CATEGORIES:
            row[c] = int(np.isin(probe[inw], cats[c]).sum()) if cats[c] else None
        a = inw & np.isin(probe, allocs)
        row["pinned_allocs"] = int(a.sum())
        row["pinned_bytes"] = int(events["size"][a].fillna(0).sum()) if a.any() else 0
        if copies:
            cp = events[inw & np.isin(probe, copies)]
            row["copies"] = len(cp)
            row["copy_bytes"] = int(cp["size"].fillna(0).sum())
            row["copy_call_ms"] = float(cp["dur_ns"].fillna(0).sum()) / 1e6
            kinds = cp["dir"].map(lambda d: MEMCPY_KIND.get(d, "other"), na_action="ignore")
            for k in ("h2d", "d2h", "d2d"):
                row[f"{k}_bytes"] = int(cp["size"][kinds == k].fillna(0).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def map_steps(events: pd.DataFrame, meta: TraceMeta, wl: dict) -> list[int]:
    """Generation steps in whose window any DMA or IOMMU map happened."""
    cats = category_probes(meta)
    names = cats["dma_map"] + cats["iommu_map"]
    ts = np.sort(events["ts_ns"][events["probe"].isin(names)].to_numpy(dtype="int64"))
    return [
        s["step"]
        for s in wl["steps"]
        if np.searchsorted(ts, s["t_end_ns"]) > np.searchsorted(ts, s["t_start_ns"])
    ]
