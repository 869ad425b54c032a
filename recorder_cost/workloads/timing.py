"""The workloads' shared timing: warm up, then run steps for a fixed window and report.

Each workload is a script run as `python3 WORKLOAD.py --result R.json [--seconds S]`,
untraced or under `iommu-trace record --workload-result R.json`; it writes its own
throughput to R.json (what the harness compares) and the CLOCK_MONOTONIC time of
its first line (what `record`'s start-up is measured against).

With `--serve LOG` it instead runs steps until SIGTERM after its warm-up, one line
`t0_ns t1_ns units` per step (CLOCK_MONOTONIC, the trace's clock) appended to LOG:
the harness's attach mode records it with `record -p` for some blocks of time and
not for others, and compares the steps inside each (recorder_cost/harness.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections.abc import Callable

FIRST_NS = time.monotonic_ns()  # imported first by every workload: its first instruction


def parser(doc: str, seconds: float = 4.0, warmup: float = 1.0) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--result", help="write the throughput here (JSON)")
    p.add_argument("--seconds", type=float, default=seconds, help="timed window")
    p.add_argument("--warmup", type=float, default=warmup, help="untimed steps first")
    p.add_argument(
        "--serve",
        metavar="LOG",
        help="after the warm-up, run steps until SIGTERM, logging each step to LOG",
    )
    p.add_argument(
        "--serve-limit", type=float, default=900.0, help="--serve: exit after this many s"
    )
    return p


def serve(step: Callable[[], int], warmup: float, log: str, limit: float) -> int:
    """Warm up, write `ready PID`, then step until SIGTERM (or limit s); returns steps.

    Lines are written at most every 50 ms, so the log costs the steps nothing."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:
        step()
    clock = time.monotonic_ns
    n, lines = 0, []
    with open(log, "a") as f:
        f.write(f"ready {os.getpid()}\n")
        f.flush()
        deadline = clock() + int(limit * 1e9)
        flushed = clock()
        while not stop:
            t0 = clock()
            units = step()
            t1 = clock()
            lines.append(f"{t0} {t1} {units}\n")
            n += 1
            if t1 - flushed > 50_000_000:
                f.write("".join(lines))
                f.flush()
                lines.clear()
                flushed = t1
                if t1 > deadline:
                    break
        f.write("".join(lines))
    return n


def run(a: argparse.Namespace, step: Callable[[], int], workload: str, unit: str, **extra) -> None:
    """The workload's main loop: a timed window (reported), or --serve."""
    if a.serve:
        serve(step, a.warmup, a.serve, a.serve_limit)
        return
    units, secs, _ = run_window(step, a.seconds, a.warmup)
    report(a.result, workload, unit, units, secs, **extra)


def run_window(step: Callable[[], int], seconds: float, warmup: float) -> tuple[int, float, int]:
    """Call step() (returning units done, synchronized) for warmup s, then for seconds s.

    Returns (units, elapsed s, steps) of the timed part."""
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:
        step()
    units = steps = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while True:
        units += step()
        steps += 1
        now = time.perf_counter()
        if now >= t_end:
            return units, now - t0, steps


def report(path: str | None, workload: str, unit: str, units: int, secs: float, **extra) -> None:
    out = {
        "workload": workload,
        "unit": unit,
        "throughput": units / secs,
        "units": units,
        "seconds": secs,
        "first_instruction_mono_ns": FIRST_NS,
        **extra,
    }
    print(f"{workload}: {out['throughput']:.1f} {unit}/s ({units} in {secs:.2f} s)", flush=True)
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
