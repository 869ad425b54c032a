"""Events a second the recorder writes, by probe kind: a benchmark, not a test.

    sudo .venv/bin/python -m iommu_trace.recorder_cost.rate --repeat 5
    sudo .venv/bin/python -m iommu_trace.recorder_cost.rate --repeat 5 \\
        --base-recorder "env PYTHONPATH=/tmp/base python3 -m iommu_trace.cli"

Each kind records `recorder_cost/loop.c` under `record` as fast as the probe
fires (or at --rate calls a second), with the benchmark catalog
(recorder_cost/rate_catalog.toml: raw tracepoints on system call entry and
exit) or an ad-hoc uprobe pair:

  tracepoint          sys_enter + sys_exit around getppid(): two events a call, no stack
  tracepoint --count  the same, counted in the kernel (record --count): no event leaves it
  tracepoint+ustack   sys_enter with the user stack id
  tracepoint+kstack   sys_enter with the kernel and the user stack ids
  uprobe pair         --uprobe loop:bench_call (entry and return, user stack)

and reports medians over --repeat runs: events written per second of the
loop (its own CLOCK_MONOTONIC; for --count, events in the count rows), events
dropped (for --count, refused by a full count map), whether the per-probe counts
match the calls made, the recorder's CPU per written event while the loop ran
(the trace's cost metadata), and the load average before each run (the CPUs
may be shared: figures under load are upper bounds on the cost). With
--base-recorder every kind runs under both recorders, interleaved.
Figures and commands: docs/recorder-cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
CATALOG = HERE / "rate_catalog.toml"

# kind -> (record arguments given the loop's path, loop mode, events per call, default calls)
KINDS: dict[str, tuple[list[str], str, int, int]] = {
    "tracepoint": (["--probe", "sys_enter,sys_exit"], "getppid", 2, 1_000_000),
    "tracepoint --count": (["--count", "--probe", "sys_enter,sys_exit"], "getppid", 2, 1_000_000),
    "tracepoint+ustack": (["--probe", "sys_enter_ustack"], "getppid", 1, 500_000),
    "tracepoint+kstack": (["--probe", "sys_enter_kstack"], "getppid", 1, 300_000),
    "uprobe pair": (["--uprobe", "{exe}:bench_call"], "call", 1, 100_000),
}


def build(tmp: Path) -> str:
    exe = tmp / "loop"
    subprocess.run(
        ["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(HERE / "loop.c")], check=True
    )
    return str(exe)


def one_run(recorder: list[str], kind: str, exe: str, calls: int, rate: float | None,
            extra: list[str], trace: Path) -> dict:  # fmt: skip
    """One recording of the loop; what it wrote, dropped and cost."""
    from iommu_trace.analysis.events import probe_counts
    from iommu_trace.tracefile.reader import load

    args, mode, per_call, _ = KINDS[kind]
    args = [a.format(exe=exe) for a in args]
    loop = [exe, mode, str(calls), *([str(rate)] if rate else [])]
    load_avg = os.getloadavg()[0]
    cmd = [*recorder, "record", "--catalog", str(CATALOG), *args, *extra, "-o", str(trace), "--"]
    p = subprocess.run([*cmd, *loop], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd + loop)} failed:\n{p.stderr}")
    ns_per_call, secs = float(p.stdout.split()[0]), float(p.stdout.split()[2])
    t = load(str(trace))
    m = t.meta
    names = [p["name"] for p in m["probes"] if p["status"] == "attach"]
    in_file = probe_counts(t) if t.num_events or t.counting else {}  # events, or count rows
    written = sum(in_file.get(n, 0) for n in names)
    refused = m.get("count", {}).get("map_full", {})  # --count: a full map's
    c = m["cost"]
    cpu = c["recorder_cpu_running"]
    lost = sum(
        n for s in (m.get("stacks_lost") or {}).values() for k in s.values() for n in k.values()
    )
    return {
        "load": load_avg,
        "ns_per_call": ns_per_call,
        "seconds": secs,
        "count": sum(m["counts"][n] for n in names),
        "expected_at_least": calls * per_call,  # the loop's calls; its start-up makes a few more
        "written": written,
        "dropped": sum(m["drops"].get(n, 0) + refused.get(n, 0) for n in names)
        + (m.get("lost") or 0),
        "stacks_lost": lost,
        "events_per_s": written / secs,
        "recorder_ns_per_event": 1e9 * (cpu["user_s"] + cpu["sys_s"]) / max(written, 1),
        "buffer": m.get("buffer"),
    }


def summarize(runs: list[dict]) -> dict:
    med = statistics.median
    return {
        "runs": len(runs),
        "events_per_s": med(r["events_per_s"] for r in runs),
        "dropped_median": med(r["dropped"] for r in runs),
        "dropped_max": max(r["dropped"] for r in runs),
        "events_median": med(r["count"] for r in runs),
        # every event the kernel counted is in the file or counted as dropped
        "accounted": all(
            r["count"] >= r["expected_at_least"] and r["count"] == r["written"] + r["dropped"]
            for r in runs
        ),
        "stacks_lost_max": max(r["stacks_lost"] for r in runs),
        "recorder_ns_per_event": med(r["recorder_ns_per_event"] for r in runs),
        "ns_per_call": med(r["ns_per_call"] for r in runs),
        "load": (min(r["load"] for r in runs), max(r["load"] for r in runs)),
        "buffer": runs[0]["buffer"],
    }


def table(results: dict) -> str:
    rows = [
        "| kind | recorder | buffer | events/s written | dropped (median, max) | events a run "
        "| counted = written + dropped | stacks lost (max) | recorder CPU per event "
        "| loop ns per call | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in results.items():
        kind, who = key.split(" / ")
        rows.append(
            f"| {kind} | {who} | {s['buffer']} | {s['events_per_s']:,.0f} "
            f"| {s['dropped_median']:,.0f}, {s['dropped_max']:,} | {s['events_median']:,.0f} "
            f"| {'yes' if s['accounted'] else 'NO'} | {s['stacks_lost_max']:,} "
            f"| {s['recorder_ns_per_event']:.0f} ns | {s['ns_per_call']:.0f} "
            f"| {s['load'][0]:.1f}-{s['load'][1]:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
    ap.add_argument("--calls", type=int, help="loop iterations a run (default: per kind)")
    ap.add_argument("--rate", type=float, help="at most this many calls a second")
    ap.add_argument("--recorder", default=f"{sys.executable} -m iommu_trace.cli")
    ap.add_argument("--base-recorder", help="also run every kind under this recorder (before)")
    ap.add_argument(
        "--record-args", default="", help="more `record` arguments, e.g. --buffer-pages 4096"
    )
    ap.add_argument("--out", help="write the runs and medians here (JSON)")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="rate-"))
    exe = build(tmp)
    recorders = {"this": shlex.split(a.recorder)}
    if a.base_recorder:
        recorders = {"base": shlex.split(a.base_recorder), **recorders}
    extra = shlex.split(a.record_args)
    runs: dict[str, list[dict]] = {}
    for kind in a.kinds.split(","):
        calls = a.calls or KINDS[kind][3]
        for i in range(a.repeat):
            for who, rec in recorders.items():  # interleaved: drift favours neither
                r = one_run(rec, kind, exe, calls, a.rate, extra, tmp / f"{i}.iot")
                runs.setdefault(f"{kind} / {who}", []).append(r)
                print(f"{kind:18} {who:5} {r['events_per_s']:>12,.0f}/s dropped {r['dropped']:>9,} "
                      f"CPU {r['recorder_ns_per_event']:5.0f} ns/event load {r['load']:.2f}",
                      file=sys.stderr, flush=True)  # fmt: skip
    results = {k: summarize(v) for k, v in runs.items()}
    if a.out:
        Path(a.out).write_text(json.dumps({"runs": runs, "medians": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
