"""`iommu-trace info` as text and JSON, from analysis.summary.summarize's dict."""

from __future__ import annotations

import json
import shlex

from ..tracefile.meta import missed_lines, no_stack_line, stack_loss_lines, stacks_lost_total
from .table import grid


def _cost_line(c: dict) -> str:
    parts = []
    if c["startup_s"] is not None:
        parts.append(
            f"start-up {c['startup_s']:.2f} s"
            + (f" (BPF compile {c['compile_s']:.2f} s)" if c["compile_s"] is not None else "")
        )
    if c["recorder_cpu_s"] is not None:
        parts.append(
            f"recorder CPU {c['recorder_cpu_s']:.2f} s while the command ran"
            + (
                f" ({100 * c['recorder_share']:.1f}% of the command's {c['workload_cpu_s']:.2f} s)"
                if c["recorder_share"] is not None
                else ""
            )
        )
    if c["bpf_s"] is not None:
        parts.append(f"in BPF programs {c['bpf_s']:.3f} s")
    return "cost       " + ", ".join(parts)


def _clip(text: str, n: int) -> str:
    """Long values (a VM's kernel command line) cut for the terminal; --format json has all."""
    return text if len(text) <= n else text[: n - 1] + "…"


def to_json(s: dict) -> str:
    return json.dumps(s, indent=2, default=str)


def _events_line(s: dict) -> str:
    c = s.get("counting")
    if c is None:
        return (
            f"events     {s['events']} in file, {s['dropped']} dropped"
            + (f", {s['withheld']} WITHHELD by the kernel" if s.get("withheld") else "")
            + (f", {s['missed']} MISSED by the kernel" if s.get("missed") else "")
            + (f", {n} stacks lost" if (n := stacks_lost_total(s.get("stacks_lost") or {})) else "")
        )
    missing = sum(c["not_counted"].values())
    if not s["finalized"]:
        return (
            "counting   trace of counts (record --count), but no count rows: the recorder "
            "stopped before its end, where it writes them"
        )
    return (
        f"counting   trace of counts (record --count): {c['counted']} events counted in the "
        f"kernel into {c['rows']} count rows (probe x device x size x second"
        + (f", {c['seconds']} s" if c["seconds"] is not None else "")
        + "); no per-event rows, no stacks"
        + (f" ({s['events']} rows of counter readings)" if s["events"] else "")
        + (
            f"; {missing} events NOT in the rows (the count map of {c['map_entries']} keys "
            "was full: record --count-entries)"
            if missing
            else ""
        )
    )


def to_text(s: dict) -> str:
    cmd = shlex.join(s["command"]) if s["command"] else f"({s['follow']})"
    lines = [
        f"trace      {s['path']}  ({s['format']}, "
        + ("finalized)" if s["finalized"] else "NOT finalized)"),
        f"command    {cmd}",
        f"exit       {s['exit_status']}"
        + (f"  (stopped by signal {s['stop_signal']})" if s["stop_signal"] else ""),
        f"started    {s['start']}  duration {s['duration_s']:.3f} s"
        if s["duration_s"] is not None
        else f"started    {s['start']}",
        f"host       {s['hostname']}  kernel {s['kernel']}",
        f"cmdline    {_clip(s['cmdline'] or '', 160)}",
        f"iommu      {s['iommu_mode']}"
        + (f" (driver: {s['iommu_vendor']})" if s.get("iommu_vendor") else "")
        + "".join(
            f"\n             group {g['group']}: {g['type']} ({', '.join(g['devices'][:4])}"
            + ("…" if len(g["devices"]) > 4 else "")
            + ")"
            for g in s["iommu_groups"][:12]
        ),
        f"headers    {s['headers']}",
        f"buffer     {s['buffer']}, addresses {s['addresses']}"
        + (f", uprobes as {s['uprobes_via']}s" if s.get("uprobes_via") else ""),
        _events_line(s),
    ]
    if s["cost"]:
        lines.append(_cost_line(s["cost"]))
    if s["workload"]:
        lines.append("workload   " + ", ".join(f"{k}={v}" for k, v in s["workload"].items()))
    lines.append("")
    counting = s.get("counting") is not None
    rows = [("PROBE", "GROUP", "STATUS", "COUNT", "IN ROWS" if counting else "IN FILE",
             "NOT IN ROWS" if counting else "DROPPED", "TARGET / REASON")]  # fmt: skip
    withheld = [p for p in s["probes"] if p.get("withheld")]
    for p in s["probes"]:
        if p["status"] == "disabled":
            continue
        rows.append(
            (
                p["name"],
                p["group"],
                p["status"],
                "" if p["count"] is None else str(p["count"]),
                str(p["in_file"]) if p["status"] == "attach" else "",
                str(n) if (n := p["not_counted"] if counting else p["dropped"]) else "",
                p["target"] if p["status"] == "attach" else p["reason"],
            )
        )
    lines += grid(rows[0], rows[1:], right=range(3, 6)).split("\n")
    for p in withheld:
        lines.append(
            f"withheld: {p['name']} fired {p['count'] + p['withheld']} times, {p['withheld']} "
            "of them never reached the trace (tracefs record over the perf trace buffer); "
            "record with raw tracepoints (BTF) to see them"
        )
    lines += missed_lines({p["name"]: p.get("missed") or 0 for p in s["probes"]})
    lines += [f"WARNING: {d}" for d in s.get("disagree") or []]
    for line in stack_loss_lines(s.get("stacks_lost") or {}):
        lines.append(f"{line}; those events have a null stack id (see record --stack-entries)")
    if (no_stack := no_stack_line(s.get("stacks_lost") or {})) is not None:
        lines.append(no_stack)
    if s.get("withheld_unchecked"):
        lines.append(
            "note: tracefs record path with no raw-tracepoint counter (no BTF): events the "
            f"kernel withheld are not counted for {', '.join(s['withheld_unchecked'])}"
        )
    off = [p["name"] for p in s["probes"] if p["status"] == "disabled"]
    if off:
        lines.append(f"opt-in, not enabled: {', '.join(off)}")
    lines += [f"note: {n}" for n in s["notes"]]
    return "\n".join(lines)
