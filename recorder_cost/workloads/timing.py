"""The workloads' shared timing: warm up, then run steps for a fixed window and report.

Each workload is a script run as `python3 WORKLOAD.py --result R.json [--seconds S]`,
untraced or under `iommu-trace record --workload-result R.json`; it writes its own
throughput to R.json (what the harness compares) and the CLOCK_MONOTONIC time of
its first line (what `record`'s start-up is measured against).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

FIRST_NS = time.monotonic_ns()  # imported first by every workload: its first instruction


def parser(doc: str, seconds: float = 4.0, warmup: float = 1.0) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--result", help="write the throughput here (JSON)")
    p.add_argument("--seconds", type=float, default=seconds, help="timed window")
    p.add_argument("--warmup", type=float, default=warmup, help="untimed steps first")
    return p


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
