"""`iommu-trace info`'s figures: a trace's provenance, probes and counts (render/summary.py
writes them)."""

from __future__ import annotations

import pyarrow.compute as pc

from ..tracefile.reader import Trace


def summarize(t: Trace) -> dict:
    m = t.meta
    in_file: dict[str, int] = {}
    if t.num_events:  # one dictionary-coded column, counted per dictionary entry
        in_file = t.value_counts("probe")
    counts = m.get("counts") or {}
    drops = m.get("drops") or {}
    fired = m.get("fired") or {}  # raw-tracepoint counts beside record-path probes
    start, end = m.get("start_mono_ns"), m.get("end_mono_ns")
    if end is None and t.num_events:
        end = pc.max(t.read(["ts_ns"]).column("ts_ns")).as_py()
    probes = []
    for p in m.get("probes", []):
        name = p["name"]
        probes.append(
            {
                **p,
                "count": counts.get(name),
                "in_file": in_file.get(name, 0),
                "dropped": drops.get(name, 0),
                # events the kernel fired but withheld from the record path; None: not counted
                "withheld": (
                    max(0, fired[name] - counts[name])
                    if name in fired and isinstance(counts.get(name), int)
                    else None
                ),
            }
        )
    unchecked = [
        p["name"]
        for p in probes
        if p["status"] == "attach"
        and p.get("path") == "tracefs record"
        and p["scope"] == "device"
        and p["withheld"] is None
    ]
    return {
        "path": t.path,
        "format": f"{m.get('format')} v{m.get('version')}",
        "finalized": t.finalized,
        "tool": m.get("tool"),
        "command": m.get("command"),
        "follow": m.get("follow"),
        "exit_status": m.get("exit_status"),
        "stop_signal": m.get("stop_signal"),
        "start": m.get("start_wall"),
        "duration_s": (end - start) / 1e9 if start and end else None,
        "hostname": m.get("hostname"),
        "kernel": t.metadata.kernel.release,
        "cmdline": t.metadata.kernel.cmdline,
        "iommu_mode": t.metadata.iommu.mode,
        "iommu_vendor": t.metadata.iommu.vendor,
        "iommu_groups": [
            {"group": g.get("group"), "type": g.get("type"), "devices": g.get("devices", [])}
            for g in t.metadata.iommu.groups
        ],
        "headers": (m.get("headers") or {}).get("note"),
        "buffer": m.get("buffer"),
        "addresses": m.get("addresses"),
        "events": t.num_events,
        "dropped": sum(drops.values()) + (m.get("lost") or 0),
        "withheld": sum(p["withheld"] or 0 for p in probes),
        "withheld_unchecked": unchecked,
        "probes": probes,
        "workload": m.get("workload") or {},
        "cost": recording_cost(m),
        "notes": t.notes,
    }


def recording_cost(m: dict) -> dict | None:
    """What the recording cost (the recorder's "cost" metadata), in seconds; None for a
    trace from a recorder that did not measure it."""
    c = m.get("cost")
    if not c:
        return None

    def secs(d: dict | None) -> float | None:
        return d["user_s"] + d["sys_s"] if d else None

    rec_s, wl_s = secs(c.get("recorder_cpu_running")), secs(c.get("workload_cpu"))
    bpf = c.get("bpf") or {}
    return {
        "startup_s": c.get("startup_s"),
        "compile_s": c.get("compile_s"),
        "attach_s": c.get("attach_s"),
        "recorder_cpu_s": rec_s,  # while the command ran
        "recorder_total_cpu_s": secs(c.get("recorder_cpu")),
        "workload_cpu_s": wl_s,
        "recorder_share": rec_s / wl_s if rec_s is not None and wl_s else None,
        "bpf_s": bpf["run_time_ns"] / 1e9 if "run_time_ns" in bpf else None,
    }
