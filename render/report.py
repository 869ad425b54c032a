"""`iommu-trace report` as text, CSV and JSON, from analysis.report.build's dict."""

from __future__ import annotations

import csv
import io
import json

from ..analysis.events import unmaps
from ..analysis.report import rate
from ..analysis.taxonomy import BY_NAME
from ..tracefile.meta import missed_lines
from .table import grid


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[list], header: list[str]) -> list[str]:
    """Rows under header as lines: numbers with thousands separators, right-aligned; None as -."""
    cells = [header] + [[fmt(x) for x in r] for r in rows]
    return grid(header, cells[1:], right=range(1, len(header))).split("\n")


def _counted(r: dict) -> list[str]:
    """A counting trace's own sections: counts per probe, what the map refused, notes."""
    out = ["", "counted in the kernel, per probe:"]
    out += table(
        [[p["probe"], p["group"], p["count"], p["per_second"], p["bytes"]] for p in r["probes"]],
        ["probe", "group", "count", "per second", "bytes"],
    )
    for name, n in r["not_counted"].items():
        out.append(f"{name}: {n:,} more events NOT in the count rows (the count map was full)")
    return out + [f"note: {n}" for n in r["notes"]]


def _probe_timeline(r: dict) -> list[str]:
    names = [p["probe"] for p in r["probes"]]
    out = ["", f"events a second, per probe ({r['bin_s']} s bins):"]
    return out + table(
        [[f"{t['t0_s']:g}-{round(t['t1_s'], 2):g}", *[t["per_second"][n] for n in names]]
         for t in r["probe_timeline"]],
        ["seconds", *names],
    )  # fmt: skip


def to_text(r: dict) -> str:
    counting = r.get("counting", False)
    out = [
        f"{r['trace']}: "
        + ("counting trace (record --count: counts per probe, device, size and second; "
           "no per-event rows), " if counting else "")
        + f"IOMMU {r['mode']}, kernel {r['kernel']}, {r['duration_s']:.3f} s"
        + (f", {r['dropped']} events dropped" if r["dropped"] else ""),
        "",
    ]  # fmt: skip
    out[1:1] = [f"WARNING: {d}" for d in r.get("disagree") or []]
    out[1:1] = missed_lines(r.get("missed") or {})
    rows = [
        [BY_NAME[k].label, v, r["rates_per_s"][k]] for k, v in r["counts"].items() if v is not None
    ]
    out += table(rows, ["event", "count", "per second"])
    fpu = r["flushes_per_unmap"]
    out.append(
        f"\nIOTLB flushes per unmap: {fmt(fpu)}   (flushes counted at: "
        f"{', '.join(r['flush_probes']) or 'no flush probe attached'})"
    )
    if r["workload"]:
        w = r["workload"]
        out.append(
            f"workload: {w['bytes']:,} bytes in {w['elapsed_s']:.3f} s = "
            f"{fmt(w['throughput_MBps'])} MB/s over {w['runs']} run(s)"
        )
    if counting:
        out += _counted(r)
    else:
        out += ["", "phases:"]
    out += (
        []
        if counting
        else table(
            [
                [
                    p["phase"],
                    p["duration_s"],
                    p["counts"].get("dma_map"),
                    p["counts"].get("iommu_map"),
                    unmaps(p["counts"]),
                    p["counts"].get("flush"),
                    p["flush_rate_per_s"],
                    p["flushes_per_unmap"],
                ]
                for p in r["phases"]
            ],
            [
                "phase",
                "seconds",
                "dma maps",
                "iommu maps",
                "unmaps",
                "flushes",
                "flushes/s",
                "flush/unmap",
            ],
        )
    )
    if r["devices"]:
        out += ["", "per device (DMA API):"]
        out += table(
            [[d["dev"], d["maps"], d["unmaps"], d["bytes_mapped"]] for d in r["devices"]],
            ["device", "maps", "unmaps", "bytes mapped"],
        )
    if r["size_histogram"]:
        out += ["", "mapping sizes:"]
        out += table(
            [[h["layer"], h["size_le"], h["count"]] for h in r["size_histogram"]],
            ["layer", "size <= bytes", "count"],
        )
    # a counting trace of other probes (syscalls) has no DMA timeline to show
    if r["timeline"] and (not counting or any(v for v in r["counts"].values() if v)):
        out += ["", f"timeline ({r['bin_s']} s bins):" if counting else "timeline:"]
        out += table(
            [
                [
                    f"{t['t0_s']:.3f}-{t['t1_s']:.3f}",
                    t["dma_map"],
                    t["iommu_map"],
                    t["iommu_unmap"],
                    t["dma_unmap"],
                    t["flush"],
                ]
                for t in r["timeline"]
            ],
            ["seconds", "dma maps", "iommu maps", "iommu unmaps", "dma unmaps", "flushes"],
        )
    if counting and r["probes"]:
        out += _probe_timeline(r)
    return "\n".join(out)


def to_csv(r: dict) -> str:
    """One row per (section, key): flat enough for a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "count", "per_second"])
    for k, v in r["counts"].items():
        w.writerow(["counts", k, v, r["rates_per_s"][k]])
    w.writerow(["ratio", "flushes_per_unmap", r["flushes_per_unmap"], ""])
    for p in r["phases"]:
        for k, v in p["counts"].items():
            w.writerow([f"phase:{p['phase']}", k, v, rate(v, p["duration_s"])])
    for h in r["size_histogram"]:
        w.writerow([f"sizes:{h['layer']}", h["size_le"], h["count"], ""])
    for t in r["timeline"]:
        for k in ("dma_map", "iommu_map", "iommu_unmap", "dma_unmap", "flush"):
            w.writerow([f"timeline:{t['t0_s']:.3f}", k, t[k], ""])
    for p in r.get("probes", []):  # a counting trace's counts per probe, and per second
        w.writerow(["probe", p["probe"], p["count"], p["per_second"]])
    for t in r.get("probe_timeline", []):
        for name, n in t["counts"].items():
            w.writerow([f"probe_timeline:{t['t0_s']:.3f}", name, n, t["per_second"][name]])
    return buf.getvalue()


def to_json(r: dict) -> str:
    return json.dumps(r, indent=2, default=str)
