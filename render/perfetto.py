"""A trace as a Chrome trace-event JSON timeline, for the Perfetto UI (ui.perfetto.dev).

- CUDA calls and ioctls: complete events (`ph: X`) on their thread, nested as
  they ran (cudaHostAlloc > cuMemHostAlloc > ioctl);
- kernel DMA/IOMMU events: thread-scoped instants (`ph: i`, `s: t`) on the
  thread current when they fired, with the CUDA call they are attributed to;
- counters (`ph: C`) in a process of their own: net bytes mapped, and the
  running number of maps, unmaps, flushes.

Times are microseconds (the format's unit) written with three decimals, so the
nanoseconds survive: Perfetto reads them back as ts*1000, rounded.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter

from ..analysis import attribution, dma_events, frames
from ..tracefile.reader import Trace

# pid_max is at most 2^22 on Linux: this pid can never be a real process.
COUNTER_PID = (1 << 22) + 1
_ARG_COLUMNS = ("size", "count", "dir", "flags", "dev", "addr", "iova", "ret")


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def _args(r: dict) -> dict:
    return {c: r[c] for c in _ARG_COLUMNS if r.get(c) is not None}


def _caller(r: dict) -> str | None:
    """The innermost kernel frame outside the DMA API / IOMMU: who asked for the mapping."""
    for s in r.get("kstack") or []:
        f = frames.parse(s, kernel=True)
        if frames.layer_of(f) not in ("dma_api", "iommu"):
            return f.key
    return None


def _fix_nesting(slices: list[dict]) -> int:
    """Clip slices that end after the slice they start in (uprobe return jitter)."""
    clipped = 0
    by_tid: dict[tuple, list[dict]] = {}
    for s in slices:
        by_tid.setdefault((s["pid"], s["tid"]), []).append(s)
    for items in by_tid.values():
        items.sort(key=lambda s: (s["ts"], -s.get("dur", 0)))
        stack: list[tuple[float, dict]] = []
        for s in items:
            end = s["ts"] + s.get("dur", 0)
            while stack and stack[-1][0] < s["ts"]:
                stack.pop()
            if stack and end > stack[-1][0] and s["ph"] == "X":
                s["dur"] = round(stack[-1][0] - s["ts"], 3)
                s["args"]["clipped"] = True
                end = stack[-1][0]
                clipped += 1
            if s["ph"] == "X":
                stack.append((end, s))
    return clipped


def export(trace: Trace, *, ioctls: bool = True, stacks: bool = False) -> dict:
    rows = dma_events.rows(trace)
    att = attribution.attribute_rows(rows)
    m = trace.metadata
    events: list[dict] = []
    comm: dict[tuple[int, int], str] = {}
    for r in rows:
        if r["pid"] is not None and r["tid"] is not None and r["comm"]:
            comm[(r["pid"], r["tid"])] = r["comm"]

    slices: list[dict] = []
    for c in att.calls:
        e = c.ev
        n, b = c.counts()
        args = _args(e)
        size = attribution.size_of(c)
        if size is not None:
            args["size"] = size
        args.update({f"{k}s caused": n[k] for k in n})
        args.update({f"{k} bytes caused": b[k] for k in b if b[k]})
        args["ioctls"] = c.n_ioctls()
        slices.append({"name": c.name, "cat": e["group"], "ph": "X", "ts": _us(e["ts_ns"]),
                       "dur": _us(e["dur_ns"]), "pid": e["pid"], "tid": e["tid"],
                       "args": args})  # fmt: skip
    if ioctls:
        for r in rows:
            if r["group"] == "syscall" and r["dur_ns"] is not None:
                args = {"cmd": hex(r["cmd"]) if r["cmd"] is not None else None, "ret": r["ret"]}
                slices.append({"name": r["probe"], "cat": "syscall", "ph": "X",
                               "ts": _us(r["ts_ns"]), "dur": _us(r["dur_ns"]), "pid": r["pid"],
                               "tid": r["tid"], "args": args})  # fmt: skip
    for r in att.events:
        args = _args(r)
        if r.get("size_inferred"):
            args["size from"] = "the matching map"
        if r.get("size_lb"):
            args["size is a lower bound"] = True
        owner = att.owner.get(id(r))
        args["cuda call"] = owner.name if owner else None
        if owner is None:
            args["origin"] = attribution.origin(r)
        args["caller"] = _caller(r)
        if stacks:
            args["kstack"] = list(r["kstack"] or [])
            args["ustack"] = list(r["ustack"] or [])
        slices.append({"name": r["probe"], "cat": r["group"], "ph": "i", "s": "t",
                       "ts": _us(r["ts_ns"]), "pid": r["pid"], "tid": r["tid"],
                       "args": args})  # fmt: skip
    clipped = _fix_nesting(slices)

    # Counters, in time order over all kernel events.
    live, ops = 0, Counter[str]()
    counters = []
    for r in att.events:
        k = dma_events.kind(r)
        ops[k] += 1
        if k == "map":
            live += r["size"] or 0
        elif k == "unmap":
            live -= r["size"] or 0
        vals = {"mapped bytes (net)": live, "maps": ops["map"], "unmaps": ops["unmap"]}
        if ops["flush"]:
            vals["IOTLB flushes"] = ops["flush"]
        if ops["iova"]:
            vals["IOVA ops"] = ops["iova"]
        counters.append({"name": "DMA", "ph": "C", "ts": _us(r["ts_ns"]), "pid": COUNTER_PID,
                         "tid": COUNTER_PID, "args": vals})  # fmt: skip

    meta_ev = [
        {"name": "process_name", "ph": "M", "pid": COUNTER_PID, "tid": COUNTER_PID,
         "args": {"name": "kernel DMA/IOMMU (system-wide)"}},
    ]  # fmt: skip
    # A process is named after its main thread, else after any thread seen.
    procs = {pid: name for (pid, tid), name in comm.items() if pid == tid}
    for (pid, tid), name in comm.items():
        procs.setdefault(pid, name)
        meta_ev.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                        "args": {"name": name}})  # fmt: skip
    for pid, name in procs.items():
        meta_ev.append({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                        "args": {"name": name}})  # fmt: skip
    events = meta_ev + sorted(slices + counters, key=lambda e: e["ts"])
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "source": "iommu-trace",
            "trace": trace.path,
            "command": shlex.join(m.command) if m.command else str(m.follow),
            "host": m.hostname,
            "kernel": m.kernel.release,
            "iommu_mode": m.iommu.mode,
            "cuda_calls": len(att.calls),
            "dma_events": len(att.events),
            "dma_events_without_call": len(att.unexplained),
            "slices_clipped": clipped,
        },
    }


def write(doc: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
