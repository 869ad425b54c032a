"""`doctor --with A.iot B.iot`: the IOMMU state each trace ran under, and what it cost.

Counts come from the recorder's exact per-probe counters (meta["counts"]) when
the trace was finalized, else from the events that reached the file.
"""

from __future__ import annotations

from typing import Any

# Operations whose counts tell the IOMMU's cost apart between modes.
COST_OPS = ("map", "unmap", "flush", "iova_alloc", "iova_free", "alloc", "free")


def _counts_by(meta: dict[str, Any], events: Any, key: str) -> dict[str, int]:
    exact = meta.get("counts") or {}
    probes = {p["name"]: p for p in meta.get("probes", []) if isinstance(p, dict)}
    if exact and meta.get("finalized", True) and all(n in probes for n in exact):
        out: dict[str, int] = {}
        for name, n in exact.items():
            k = probes[name].get(key)
            if k and n:
                out[k] = out.get(k, 0) + int(n)
        return out
    if len(events) == 0 or key not in events:
        return {}
    return {str(k): int(v) for k, v in events.groupby(key, dropna=True).size().items() if v}


def summarise(trace: Any) -> dict[str, Any]:
    """One trace: where it ran, under which IOMMU mode, and its DMA/IOMMU operation counts."""
    meta, ev = trace.meta, trace.events
    snap = meta.get("iommu") or {}
    start, end = meta.get("start_mono_ns"), meta.get("end_mono_ns")
    if start and end:
        seconds = (end - start) / 1e9
    elif len(ev):
        seconds = (int(ev["ts_ns"].max()) - int(ev["ts_ns"].min())) / 1e9
    else:
        seconds = None
    ops = _counts_by(meta, ev, "op")
    groups = _counts_by(meta, ev, "group")
    mapped = None
    if len(ev) and "size" in ev and "op" in ev:
        mapped = int(ev.loc[ev["op"] == "map", "size"].fillna(0).sum())
    call_ns: dict[str, dict[str, float]] = {}
    if len(ev) and "dur_ns" in ev:
        timed = ev[ev["dur_ns"].notna()]
        for op, durs in timed.groupby("op")["dur_ns"]:
            call_ns[str(op)] = {"n": int(len(durs)), "total_ns": int(durs.sum()),
                                "mean_ns": round(float(durs.mean()), 1)}
    kernel = meta.get("kernel") or {}
    return {
        "path": trace.path,
        "host": meta.get("hostname"),
        "kernel": kernel.get("release") if isinstance(kernel, dict) else kernel,
        "command": meta.get("command"),
        "mode": snap.get("mode", "unknown"),
        "vendor": snap.get("vendor"),
        "group_types": sorted({g.get("type") for g in snap.get("groups", []) if g.get("type")}),
        "seconds": round(seconds, 3) if seconds else seconds,
        "finalized": trace.finalized,
        "ops": ops,
        "groups": groups,
        "bytes_mapped_in_file": mapped,
        "timed_ops": call_ns,
        "flush_per_unmap": round(ops["flush"] / ops["unmap"], 3)
        if ops.get("unmap") and "flush" in ops else None,
    }


def compare(paths: list[str]) -> dict[str, Any]:
    """Summaries of each trace and one line per difference worth reading."""
    from ..tracefile.reader import load  # the reader is the recorder's; loaded only when asked

    sums = [summarise(load(p)) for p in paths]
    diffs: list[str] = []
    modes = {s["mode"] for s in sums}
    if len(modes) > 1:
        diffs.append("IOMMU modes differ: " + ", ".join(f"{s['path']}={s['mode']}" for s in sums))
    base = sums[0]
    for s in sums[1:]:
        for op in COST_OPS:
            a, b = base["ops"].get(op, 0), s["ops"].get(op, 0)
            if a or b:
                ratio = f" ({b / a:.2f}x)" if a else ""
                diffs.append(f"{op}: {a} in {base['path']} vs {b} in {s['path']}{ratio}")
        for op in sorted(set(base["timed_ops"]) & set(s["timed_ops"])):
            a, b = base["timed_ops"][op]["mean_ns"], s["timed_ops"][op]["mean_ns"]
            diffs.append(f"{op} mean time: {a:.0f} ns vs {b:.0f} ns")
    for s in sums:
        if s["mode"] in ("off", "passthrough") and s["ops"].get("flush"):
            diffs.append(f"{s['path']}: {s['ops']['flush']} IOTLB flushes under "
                         f"{s['mode']}: devices outside the DMA API (e.g. VFIO) flushed")
        if not s["finalized"]:
            diffs.append(f"{s['path']}: not finalized, counts are those of events in the file")
    return {"traces": sums, "differences": diffs}


def render_text(result: dict[str, Any]) -> str:
    out = ["", "Traces"]
    for s in result["traces"]:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(s["ops"].items())) or "no DMA/IOMMU events"
        out.append(f"  {s['path']}: IOMMU {s['mode']}"
                   + (f" ({s['vendor']})" if s["vendor"] else "")
                   + f", kernel {s['kernel']}, {s['seconds']} s")
        out.append(f"    {ops}")
        if s["flush_per_unmap"] is not None:
            out.append(f"    IOTLB flushes per unmap: {s['flush_per_unmap']}")
    if result["differences"]:
        out += ["", "Differences"] + [f"  {d}" for d in result["differences"]]
    return "\n".join(out) + "\n"
