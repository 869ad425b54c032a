"""`iommu-trace info`'s figures: a trace's provenance, probes and counts (render/summary.py
writes them)."""

from __future__ import annotations

import pyarrow.compute as pc

from ..tracefile.meta import Cost
from ..tracefile.reader import Trace
from .consistency import disagreements
from .events import probe_counts


def summarize(t: Trace) -> dict:
    m = t.metadata
    in_file: dict[str, int] = {}
    if t.num_events or t.counting:  # counted per dictionary entry, or the count rows summed
        in_file = probe_counts(t)
    not_counted = m.counting.not_counted  # --count: events the full map could not take
    counts, drops = m.counts, m.drops
    fired = m.fired  # raw-tracepoint counts beside record-path probes
    start, end = m.start_mono_ns, m.end_mono_ns
    if end is None and t.num_events:
        end = pc.max(t.read(["ts_ns"]).column("ts_ns")).as_py()
    probes = []
    # Each probe entry whole, as the recorder wrote it (its skipped targets, paths): the
    # raw JSON is what info shows, with the counts beside it.
    for p in t.meta.get("probes", []):
        name = p["name"]
        probes.append(
            {
                **p,
                "count": counts.get(name),
                "in_file": in_file.get(name, 0),
                "dropped": drops.get(name, 0),
                "missed": m.missed.get(name, 0),
                "not_counted": not_counted.get(name, 0),
                # events the kernel fired but withheld from the record path; None: not counted
                "withheld": (
                    max(0, fired[name] - counts[name])
                    if name in fired and isinstance(counts.get(name), int)
                    else None
                ),
            }
        )
    withheld = {p["name"]: p["withheld"] for p in probes}
    unchecked = [
        p.name
        for p in m.probes
        if p.attached
        and p.path == "tracefs record"
        and p.scope == "device"
        and withheld[p.name] is None
    ]
    return {
        "path": t.path,
        "format": f"{m.format} v{m.version}",
        "finalized": t.finalized,
        "tool": m.tool,
        "command": m.command,
        "follow": m.follow,
        "exit_status": m.exit_status,
        "stop_signal": m.stop_signal,
        "start": m.start_wall,
        "duration_s": (end - start) / 1e9 if start and end else None,
        "hostname": m.hostname,
        "kernel": m.kernel.release,
        "cmdline": m.kernel.cmdline,
        "iommu_mode": m.iommu.mode,
        "iommu_vendor": m.iommu.vendor,
        "iommu_groups": [
            {"group": g.get("group"), "type": g.get("type"), "devices": g.get("devices", [])}
            for g in m.iommu.groups
        ],
        "headers": m.headers.note,
        "buffer": m.buffer,
        "uprobes_via": m.uprobes_via,
        "addresses": m.addresses,
        "events": t.num_events,
        "mode": m.mode,
        "counting": _counting(t, in_file) if t.counting else None,
        "dropped": sum(drops.values()) + m.lost,
        "withheld": sum(p["withheld"] or 0 for p in probes),
        "missed": sum(m.missed.values()),
        "disagree": [d.line() for d in disagreements(m)],
        "withheld_unchecked": unchecked,
        "stacks_lost": t.metadata.stacks_lost,
        "probes": probes,
        "workload": m.workload,
        "cost": recording_cost(m.cost),
        "notes": t.notes,
    }


def _counting(t: Trace, in_rows: dict[str, int]) -> dict:
    """A counting trace's figures: events counted into its rows, and what its map refused."""
    c = t.metadata.counting
    rows = t.count_rows()
    seconds = pc.max(rows.column("second")).as_py() if rows.num_rows else None
    return {
        "rows": rows.num_rows,
        "counted": sum(in_rows.values()),
        "seconds": None if seconds is None else seconds + 1,
        "not_counted": c.not_counted,
        "map_entries": c.map_entries,
        "map_keys": c.map_keys,
        "origin_mono_ns": c.origin_mono_ns,
    }


def recording_cost(c: Cost | None) -> dict | None:
    """What the recording cost, in seconds; None for a trace from a recorder that did not
    measure it."""
    if c is None:
        return None
    rec_s, wl_s = c.recorder_cpu_running_s, c.workload_cpu_s
    return {
        "startup_s": c.startup_s,
        "compile_s": c.compile_s,
        "attach_s": c.attach_s,
        "recorder_cpu_s": rec_s,  # while the command ran
        "recorder_total_cpu_s": c.recorder_cpu_s,
        "workload_cpu_s": wl_s,
        "recorder_share": rec_s / wl_s if rec_s is not None and wl_s else None,
        "bpf_s": c.bpf_run_time_ns / 1e9 if c.bpf_run_time_ns is not None else None,
    }
