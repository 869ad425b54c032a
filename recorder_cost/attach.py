"""The harness's attach mode: one workload process, recorded in some blocks of time and not others.

Whole runs of a GPU workload differ by ±5% from one process to the next on the
GPU machine (recorder_cost/results/h200-2026-12-01.json: 119 500-131 700
copies/s untraced), which buries a 1% cost under any affordable number of runs.
Within one process the steps are steadier, so attach mode starts the workload
once with `--serve LOG` (recorder_cost/workloads/timing.py) and then, per pair,
leaves it alone for a block of time and records it for one with `iommu-trace
record -p PID -d SECONDS` (the same probes, program and consumer as `record --
COMMAND`; existing descendants are followed too). Only the steps wholly inside
a block count: the untraced block's, and the traced block's between the trace's
start_mono_ns (all probes attached) and end_mono_ns. The recorder's start-up and
its tear-down (until the process holding the probes, tracer/detach.py, is gone)
belong to neither.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..system.procfs import stat_fields
from ..tracer.detach import holders

MIN_STEPS = 3  # a block with fewer whole steps says too little


@dataclass(frozen=True)
class Block:
    rate: float | None  # units per second over the block's whole steps
    steps: int
    seconds: float  # first step's start to last step's end
    median_step_rate: float | None = None  # units / median step time: robust to stalls


def read_steps(log: Path) -> list[tuple[int, int, int]]:
    """(t0_ns, t1_ns, units) per step, from a --serve log (its `ready` line skipped)."""
    out = []
    for line in log.read_text().splitlines():
        f = line.split()
        if len(f) == 3 and f[0].isdigit():
            out.append((int(f[0]), int(f[1]), int(f[2])))
    return out


def block(steps: list[tuple[int, int, int]], lo_ns: int, hi_ns: int) -> Block:
    """The throughput of the steps that began at or after lo_ns and ended by hi_ns."""
    inside = [s for s in steps if s[0] >= lo_ns and s[1] <= hi_ns]
    if len(inside) < MIN_STEPS:
        return Block(None, len(inside), 0.0)
    span = (inside[-1][1] - inside[0][0]) / 1e9
    units = sum(s[2] for s in inside)
    per_step = sorted((s[2] / (s[1] - s[0]) * 1e9) for s in inside if s[1] > s[0])
    med = per_step[len(per_step) // 2] if per_step else None
    return Block(units / span if span > 0 else None, len(inside), span, med)


def start(argv: list[str], log: Path, timeout: float) -> subprocess.Popen:
    """The workload with --serve LOG, once it has warmed up (its `ready` line)."""
    log.unlink(missing_ok=True)
    p = subprocess.Popen([*argv, "--serve", str(log)], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().startswith("ready"):
            return p
        if p.poll() is not None:
            raise RuntimeError(f"the workload exited ({p.returncode}) before it was ready")
        time.sleep(0.1)
    p.kill()
    raise RuntimeError(f"the workload was not ready within {timeout:.0f} s")


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def record(cmd: list[str], timeout: float) -> dict:
    """Run one `record -p` (cmd) and wait until its probes are down; when each happened.

    Returns rc, and CLOCK_MONOTONIC ns of the launch, the recorder's exit and the end
    of its tear-down (the holder processes it left, if any, gone), and their count."""
    before = holders()
    launched = time.monotonic_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    mine: set[int] = set()
    deadline = time.monotonic() + timeout
    while p.poll() is None:  # the holder appears just before the recorder exits
        if time.monotonic() > deadline:
            p.kill()
        mine |= holders() - before
        time.sleep(0.05)
    exited = time.monotonic_ns()
    mine |= holders() - before
    n_holders = len(mine)
    t = time.monotonic()
    while mine and time.monotonic() - t < 60:
        mine = {h for h in mine if _alive(h)}
        time.sleep(0.02)
    return {
        "rc": p.returncode,
        "launched_ns": launched,
        "exited_ns": exited,
        "down_ns": time.monotonic_ns(),
        "holders": n_holders,
    }


def _alive(pid: int) -> bool:
    """Still running: a zombie has closed its files (the probes are down)."""
    rest = stat_fields(pid)
    if not rest:
        return False
    return rest[0] not in ("Z", "X")
