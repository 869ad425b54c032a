"""`iommu-trace compare` as text, CSV, JSON and a plot, from analysis.side_by_side.build."""

from __future__ import annotations

import csv
import io
import json
import os

from .report import fmt, table

ROWS = (
    ("dma_map", "DMA API maps"),
    ("iommu_map", "IOMMU maps"),
    ("iommu_unmap", "IOMMU unmaps"),
    ("dma_unmap", "DMA API unmaps"),
    ("flush", "IOTLB flushes"),
    ("flush_strict", "  strict syncs"),
    ("flush_queue", "  flush-queue drains"),
    ("flush_timer", "    timer-driven"),
    ("iova_alloc", "IOVA allocs"),
    ("iova_free", "IOVA frees"),
)


def _ratio(a, b):
    return None if a in (None, 0) or b is None else b / a


def _lines(c: dict) -> list[tuple[str, list]]:
    """(label, value per trace) rows, with the metrics users compare modes by."""
    cols = c["traces"]
    rows = [(label, [col["counts"].get(k) for col in cols]) for k, label in ROWS]
    rows += [
        ("IOTLB flushes / s, whole trace", [col["rates_per_s"].get("flush") for col in cols]),
        ("IOTLB flushes / s, workload runs", [col["workload_flush_rate_per_s"] for col in cols]),
        ("flushes per unmap", [col["flushes_per_unmap"] for col in cols]),
        ("DMA map latency, median us", [col["map_latency_us"] for col in cols]),
        ("DMA unmap latency, median us", [col["unmap_latency_us"] for col in cols]),
        ("workload throughput MB/s", [col["throughput_MBps"] for col in cols]),
    ]
    return rows


def to_text(c: dict) -> str:
    cols = c["traces"]
    header = ["", *[col["label"] for col in cols]] + [
        f"ratio {i + 1}/1" for i in range(1, len(cols))
    ]
    body = []
    for label, vals in _lines(c):
        if all(v is None for v in vals):
            continue
        body.append([label, *vals, *[_ratio(vals[0], v) for v in vals[1:]]])
    out = table(body, header)
    sweeps = [col for col in cols if len(col["runs"]) > 1]
    if sweeps:
        out += ["", "by transfer size (MB/s | flushes per MB):"]
        sizes = sorted({r["bs"] for col in sweeps for r in col["runs"] if r["bs"]})
        rows = []
        for bs in sizes:
            row = [bs]
            for col in sweeps:
                run = next((r for r in col["runs"] if r["bs"] == bs), None)
                row.append(
                    f"{fmt(run['throughput_MBps'])} | {fmt(run['flushes_per_MB'])}" if run else "-"
                )
            rows.append(row)
        out += table(rows, ["bs", *[col["label"] for col in sweeps]])
    counting = [col["label"] for col in cols if col.get("counting")]
    if counting:
        out += [
            "",
            f"counting traces (record --count): {', '.join(counting)}; their counts and rates "
            "are exact, latencies and per-run figures need per-event rows",
        ]
    out += [
        "",
        "flushes counted at: "
        + "; ".join(f"{col['label']}: {', '.join(col['flush_probes']) or 'none'}" for col in cols),
    ]
    return "\n".join(out)


def to_json(c: dict) -> str:
    return json.dumps(c, indent=2, default=str)


def to_csv(c: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", *[col["trace"] for col in c["traces"]]])
    for label, vals in _lines(c):
        w.writerow([label.strip(), *["" if v is None else v for v in vals]])
    return buf.getvalue()


def plot(c: dict, path: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ext = os.path.splitext(path)[1].lower()
    if ext not in (".svg", ".png", ".pdf"):
        raise ValueError(f"plot format {ext or '(none)'} not supported: use .svg, .png or .pdf")
    cols = c["traces"]
    labels = [col["label"] for col in cols]
    sweeps = [col for col in cols if len(col["runs"]) > 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if sweeps:
        for col in sweeps:
            runs = [r for r in col["runs"] if r["bs"]]
            xs = [r["bs"] / 1024 for r in runs]
            axes[0].plot(xs, [r["throughput_MBps"] for r in runs], marker="o", label=col["label"])
            axes[1].plot(
                xs, [r["flushes_per_MB"] or 0 for r in runs], marker="o", label=col["label"]
            )
        for ax, ylabel in zip(axes, ("throughput (MB/s)", "IOTLB flushes per MB"), strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("transfer size (KiB)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        axes[1].set_yscale("symlog", linthresh=1)  # lazy's few flushes stay visible beside strict's
        axes[1].set_ylim(bottom=0)
    else:
        rate = [
            col["workload_flush_rate_per_s"] or col["rates_per_s"].get("flush") or 0 for col in cols
        ]
        tput = [col["throughput_MBps"] or 0 for col in cols]
        axes[0].bar(labels, rate, color="tab:red")
        axes[0].set_ylabel("IOTLB flushes per second (workload runs)")
        axes[1].bar(labels, tput, color="tab:blue")
        axes[1].set_ylabel("workload throughput (MB/s)")
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=15, labelsize=8)
    source = "; ".join(
        f"{os.path.basename(col['trace'])} (flushes: {', '.join(col['flush_probes']) or 'none'})"
        for col in cols
    )
    fig.text(0.01, 0.01, f"source: {source}", fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path)
    plt.close(fig)
