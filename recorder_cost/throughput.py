"""Benchmark of the recorder's cost: not a test, run by hand and quoted in docs/recorder-cost.md.

    sudo .venv/bin/python recorder_cost/throughput.py [--repeat 5]

Measures, as medians over --repeat runs:
  - ns per call of a tight loop of a uprobe-traced function (uprobe+uretprobe,
    user stack) and of an ioctl loop (syscall enter/exit tracepoints), untraced
    vs traced: the slowdown the tracer inflicts on what it measures;
  - the event rate the recorder sustains into the trace file: events written
    per second of workload, and whether any were dropped (counts stay exact);
  - how long `iommu-trace info` takes on the resulting trace.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


def build(tmp: Path) -> str:
    exe = tmp / "loop"
    subprocess.run(
        ["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(HERE / "loop.c")], check=True
    )
    return str(exe)


def ns_per_op(out: str) -> float:
    return float(out.split()[0])


def run_plain(exe: str, mode: str, n: int) -> float:
    return ns_per_op(subprocess.run([exe, mode, str(n)], capture_output=True, text=True).stdout)


def run_traced(exe: str, mode: str, n: int, trace: Path, extra: list[str]) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        "-m",
        "iommu_trace.cli",
        "record",
        "-o",
        str(trace),
        *extra,
        "--",
        exe,
        mode,
        str(n),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    from iommu_trace.tracefile.reader import load

    t = load(str(trace))
    probe = "bench_call" if mode == "call" else "ioctl"
    secs = float(p.stdout.split()[2])
    written = int((t.events.probe == probe).sum())
    stats = {
        "count": t.metadata.counts[probe],
        "written": written,
        "dropped": t.metadata.drops[probe] + t.metadata.lost,
        "events_per_s": written / secs,
    }
    return ns_per_op(p.stdout), stats


BARE = """
BPF_ARRAY(hits, u64, 1);
int on_call(void *ctx) {
    int k = 0;
    u64 *v = hits.lookup(&k);
    if (v) __sync_fetch_and_add(v, 1);
    return 0;
}
"""


def run_bare_uprobe(exe: str, n: int) -> float:
    """The kernel's own price: a uprobe+uretprobe pair whose program only counts."""
    from bcc import BPF

    b = BPF(text=BARE)
    b.attach_uprobe(name=exe.encode(), sym=b"bench_call", fn_name=b"on_call")
    b.attach_uretprobe(name=exe.encode(), sym=b"bench_call", fn_name=b"on_call")
    try:
        return run_plain(exe, "call", n)
    finally:
        b.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    exe = build(tmp)
    rows = []
    bare = [run_bare_uprobe(exe, args.calls) for _ in range(args.repeat)]
    rows.append(
        {
            "loop": "call, bare BCC uprobe pair (counter only)",
            "calls": args.calls,
            "traced_ns": statistics.median(bare),
        }
    )
    for mode, extra in (
        ("call", ["--uprobe", f"{exe}:bench_call"]),
        ("ioctl", []),
    ):
        plain, traced, stats, info_s = [], [], [], []
        for i in range(args.repeat):
            plain.append(run_plain(exe, mode, args.calls))
            trace = tmp / f"{mode}{i}.iot"
            ns, st = run_traced(exe, mode, args.calls, trace, extra)
            traced.append(ns)
            stats.append(st)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "iommu_trace.cli", "info", str(trace)],
                capture_output=True,
                check=True,
            )
            info_s.append(time.perf_counter() - t0)
        rows.append(
            {
                "loop": mode,
                "calls": args.calls,
                "untraced_ns": statistics.median(plain),
                "traced_ns": statistics.median(traced),
                "added_ns": statistics.median(traced) - statistics.median(plain),
                "events_per_s": statistics.median(s["events_per_s"] for s in stats),
                "dropped_max": max(s["dropped"] for s in stats),
                "exact": all(s["count"] == args.calls for s in stats),
                "info_s": statistics.median(info_s),
            }
        )
    print(json.dumps(rows, indent=2))
    print(
        f"\n{'loop':6} {'untraced':>10} {'traced':>10} {'added':>9} {'events/s':>10} "
        f"{'dropped':>8} {'exact':>6} {'info':>7}"
    )
    for r in rows:
        if "untraced_ns" not in r:
            print(f"{'bare':6} {'':>10} {r['traced_ns']:>8.1f}ns  (uprobe+uretprobe, counter only)")
            continue
        print(
            f"{r['loop']:6} {r['untraced_ns']:>8.1f}ns {r['traced_ns']:>8.1f}ns "
            f"{r['added_ns']:>7.1f}ns {r['events_per_s']:>10.0f} {r['dropped_max']:>8} "
            f"{r['exact']!s:>6} {r['info_s']:>6.2f}s"
        )


if __name__ == "__main__":
    main()
