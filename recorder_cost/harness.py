"""Overhead harness: real workloads untraced and under `iommu-trace record`, interleaved.

A benchmark, not a test: run it by hand on the machine whose figures you quote
(as root: recording needs BPF), then put the table into docs/benchmarks.md.

    sudo python3 -m iommu_trace.recorder_cost.harness --pairs 5 \\
        --sets default,kernel --out recorder_cost/results/MACHINE-DATE.json
    python3 -m iommu_trace.recorder_cost.harness --table recorder_cost/results/MACHINE-DATE.json

Two modes. `--mode attach` (the default) starts each workload once and pairs
blocks of time within it: one untraced, one under `record -p PID -d BLOCK` with
the probe set (recorder_cost/attach.py says why: whole runs differ by ±5%).
`--mode process` runs the workload as a user does, untraced and under `record
-- COMMAND`, a whole process per run, its throughput over a fixed window after
its warm-up (what start-up and the child's environment could change).

Each round makes one pair per probe set; the first --warmup rounds are
discarded. Even rounds run untraced first, odd rounds last (ABBA), so linear
drift of the machine does not favour either side. The slowdown of a pair is
untraced / traced throughput - 1, as the workload itself counts its work.
Reported per workload and probe set: the median slowdown over pairs with a
bootstrap 95% CI, events per second, and what the trace says the recording cost
(start-up, recorder CPU). Raw numbers go to --out after every pair, so an
interrupted matrix keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import attach
from .stats import slowdown

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Workload:
    argv: list[str]  # from the repository root
    key: str = "throughput"  # the result JSON's throughput field
    unit: str = ""
    block_s: float = 3.0  # attach mode: a block holds >= ~10 of its steps
    serve: tuple[str, ...] = ()  # attach mode: extra arguments (finer steps)


def workloads(seconds: float) -> dict[str, Workload]:
    w = str(REPO / "recorder_cost" / "workloads")
    s = ["--seconds", str(seconds)]
    flexgen = ["--model", "facebook/opt-1.3b", "--percent", *"100 0 0 100 100 0".split()]
    flexgen += ["--prompt-len", "256", "--gpu-batch-size", "8"]
    return {
        "memcpy-4k": Workload([PY, f"{w}/memcpy_loop.py", *s], unit="copies/s", block_s=2.0),
        "input-pipeline": Workload([PY, f"{w}/input_pipeline.py", *s], unit="samples/s"),
        "offload-decode": Workload(
            [PY, f"{w}/offload_decode.py", *s],
            unit="tokens/s",
            block_s=4.0,
            serve=("--new-tokens", "2"),
        ),  # fmt: skip
        # attach mode: FlexGen's generate in a loop (8 new tokens a step)
        "flexgen": Workload(
            [PY, f"{w}/flexgen_decode.py", *s, *flexgen], unit="tokens/s", block_s=4.0
        ),
        # process mode: the example as users run it; its decode phase is the window
        "flexgen-run": Workload(
            [PY, str(REPO / "examples" / "flexgen_run.py"), *flexgen, "--gen-len", "32"],
            key="decode_tok_s",
            unit="tokens/s",
        ),
        # no GPU needed: tries the harness on the CI VM; not a measured workload
        "ioctl-loop": Workload([PY, f"{w}/ioctl_loop.py", *s], unit="ioctls/s", block_s=2.0),
    }


PER_COPY = ",".join(
    ["cudaMemcpy", "cudaMemcpyAsync", "cuMemcpyHtoD", "cuMemcpyDtoH"]
    + ["cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuMemcpyAsync"]
)
# Probe sets: `record` flags. "base:SET" runs SET with --base-recorder (before/after).
# "none" records nothing: its block is timed like a traced one, so its pairs are the
# instrument's own resolution (A/A), measured the same way as the real pairs.
NONE = "none"
SETS: dict[str, list[str]] = {
    NONE: [],
    "default": [],
    "kernel": ["--no-probe", "syscall,cuda-driver,cuda-runtime,process"],
    "no-syscall": ["--no-probe", "syscall"],
    "per-copy": ["--probe", PER_COPY],
    # the default set until 2026-12-04: device allocations probed, ioctl with user stacks
    "prev-default": ["--probe", "cuMemAlloc,cuMemFree", "--ustack", "ioctl"],
}


def _meta(trace: str) -> dict:
    """The trace's metadata as JSON: the results file keeps its "cost" object whole."""
    from ..tracefile.reader import load  # noqa: PLC0415 - only traced runs need it

    return load(trace).meta


def _run(argv: list[str], timeout: float) -> tuple[int, float, resource.struct_rusage]:
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, ru
        if time.perf_counter() > deadline:
            p.kill()
        time.sleep(0.02)


def run_one(
    wl: Workload, probe_set: str | None, record: list[str], tmp: Path, timeout: float
) -> dict:
    """One run, untraced (probe_set None) or traced; its throughput and costs."""
    res = tmp / "result.json"
    res.unlink(missing_ok=True)
    cmd = [*wl.argv, "--result", str(res)]
    trace = tmp / "run.iot"
    if probe_set is not None:
        flags = SETS[probe_set.removeprefix("base:")]
        cmd = [*record, "record", "-o", str(trace), *flags, "--workload-result", str(res)]
        cmd += ["--", *wl.argv, "--result", str(res)]
    rc, wall, ru = _run(cmd, timeout)
    out: dict = {
        "rc": rc,
        "wall_s": wall,
        "tree_cpu_s": ru.ru_utime + ru.ru_stime,  # everything the run waited for
        "tree_involuntary_switches": ru.ru_nivcsw,
    }
    try:
        out["result"] = json.loads(res.read_text())
        out["throughput"] = out["result"].get(wl.key)
    except (OSError, ValueError):
        out["throughput"] = None
    if probe_set is not None:
        out.update(_traced(trace))
    return out


def _traced(trace: Path) -> dict:
    """What a traced run's trace says: events, drops, the probes attached, its cost."""
    out: dict = {}
    if not trace.exists():
        return {"trace_error": "no trace written"}
    try:
        m = _meta(str(trace))
    except Exception as e:  # a broken trace is a result too
        out["trace_error"] = str(e)
    else:
        lo, hi = m.get("start_mono_ns") or 0, m.get("end_mono_ns") or 0
        span = (hi - lo) / 1e9
        c = m.get("cost") or {}
        cpu = c.get("recorder_cpu_running")
        out.update(
            start_mono_ns=lo,
            end_mono_ns=hi,
            span_s=span,
            events=m.get("events_written"),
            events_per_s=(m.get("events_written") or 0) / span if span > 0 else None,
            counts=m.get("counts"),
            drops=sum((m.get("drops") or {}).values()) + (m.get("lost") or 0),
            attached=sorted(p["name"] for p in m.get("probes", []) if p.get("status") == "attach"),
            cost=c,
            detach=m.get("detach"),
            # share of one CPU the recorder took while recording
            recorder_cpu_share=(cpu["user_s"] + cpu["sys_s"]) / span if cpu and span > 0 else None,
        )
    for p in trace.parent.glob(trace.name + "*"):
        p.unlink()
    return out


def _schedule(a: argparse.Namespace, sets: list[str]):
    """(round, probe set) in ABBA order, each set for its --pairs-for rounds."""
    limit = {k: int(v) for k, v in (x.split("=") for x in a.pairs_for)}
    for rnd in range(a.warmup + a.pairs):
        active = [s for s in sets if rnd < a.warmup + limit.get(s, a.pairs)]
        for ps in active if rnd % 2 == 0 else reversed(active):
            yield rnd, ps


def _traced_block(a: argparse.Namespace, ps: str, pid: int, trace: Path, block_s: float) -> dict:
    """One `record -p PID` block with probe set ps: its times, its trace, its window.

    The window [lo_ns, hi_ns] leaves out the first --settle s after the probes attached,
    the recorder's start-up's. The "none" set starts no recorder: the same window,
    timed here."""
    if ps == NONE:
        launched = time.monotonic_ns()
        time.sleep(a.settle + block_s)
        end = time.monotonic_ns()
        return {"rc": 0, "wall_s": (end - launched) / 1e9, "teardown_s": 0.0,
                "lo_ns": launched + int(a.settle * 1e9), "hi_ns": end}  # fmt: skip
    rec = shlex.split(a.base_recorder if ps.startswith("base:") else a.recorder)
    cmd = [*rec, "record", "-p", str(pid), "-o", str(trace)]
    cmd += ["-d", str(block_s + a.settle), *SETS[ps.removeprefix("base:")]]
    r = attach.record(cmd, a.timeout)
    r["wall_s"] = (r["exited_ns"] - r["launched_ns"]) / 1e9
    r["teardown_s"] = (r["down_ns"] - r["exited_ns"]) / 1e9
    r.update(_traced(trace))
    r["lo_ns"] = (r.get("start_mono_ns") or 0) + int(a.settle * 1e9)
    r["hi_ns"] = r.get("end_mono_ns") or 0
    return r


def _keep_steps(a: argparse.Namespace, logs: dict[Path, str]) -> None:
    """The raw step logs, for another look at the blocks (--keep-steps DIR)."""
    if a.keep_steps:
        Path(a.keep_steps).mkdir(parents=True, exist_ok=True)
        for log, name in logs.items():
            shutil.copy(log, Path(a.keep_steps) / name)


def attach_matrix(
    name: str, wl: Workload, sets: list[str], a: argparse.Namespace, doc: dict, save
) -> None:
    """One workload in attach mode (recorder_cost/attach.py): a pair per set and round."""
    tmp = Path(tempfile.mkdtemp(prefix="recorder-cost-"))
    log, trace = tmp / "steps.log", tmp / "run.iot"
    block_s = a.block or wl.block_s
    t_start = time.monotonic()
    proc = attach.start([*_pinned(a, 0), *wl.argv, *wl.serve], log, a.timeout)
    doc["workloads"][name]["ready_s"] = time.monotonic() - t_start
    try:
        for rnd, ps in _schedule(a, sets):
            pair = []
            for traced in (False, True) if rnd % 2 == 0 else (True, False):
                r: dict = {"workload": name, "round": rnd, "warmup": rnd < a.warmup}
                if traced:
                    r.update(_traced_block(a, ps, proc.pid, trace, block_s), set=ps)
                else:
                    time.sleep(a.settle)  # the last block's tear-down settles
                    lo = time.monotonic_ns()
                    time.sleep(block_s)
                    hi = time.monotonic_ns()
                    r.update(set="untraced", rc=0, wall_s=(hi - lo) / 1e9, lo_ns=lo, hi_ns=hi)
                    r["for"] = ps
                pair.append(r)
            _settle(log, max(r["hi_ns"] for r in pair), proc)
            steps = attach.read_steps(log)
            for r in pair:
                b = attach.block(steps, r["lo_ns"], r["hi_ns"])
                r.update(
                    throughput=b.rate,
                    steps=b.steps,
                    block_s=b.seconds,
                    median_step_rate=b.median_step_rate,
                )
                doc["runs"].append(r)
                print(
                    f"harness: {name} round {rnd} {r['set']}: {b.rate} ({b.steps} steps"
                    + (f", {r.get('events')} events" if r["set"] != "untraced" else "")
                    + ")",
                    file=sys.stderr,
                    flush=True,
                )
            save()
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) during the matrix")
    finally:
        attach.stop(proc)
        _keep_steps(a, {log: f"{name}.steps"})


def twin_matrix(
    name: str, wl: Workload, sets: list[str], a: argparse.Namespace, doc: dict, save
) -> None:
    """Two copies of the workload at once; each pair traces one copy, then the other.

    The machine's drift (docs/benchmarks.md: ±8% over seconds) slows both copies
    alike, so the untraced copy's rate in the same window is the reference: a
    block's ratio untraced/traced cancels it. Tracing A then B, the geometric mean
    of the two blocks' ratios cancels a standing difference between the copies
    too. Stored like attach mode's pairs: "untraced" the geometric mean of the
    untraced copy's two rates, the traced run the traced copy's.

    Two CUDA processes on one GPU are time-sliced unless MPS is running: a 4 KiB
    copy loop then runs at ~7 k copies/s instead of ~130 k, and the GPU's slices,
    not the CPU, set the rate (docs/benchmarks.md). Start MPS first for such
    workloads."""
    tmp = Path(tempfile.mkdtemp(prefix="recorder-cost-"))
    logs = [tmp / "a.steps", tmp / "b.steps"]
    trace = tmp / "run.iot"
    block_s = a.block or wl.block_s
    t_start = time.monotonic()
    procs = [
        attach.start([*_pinned(a, i), *wl.argv, *wl.serve], log, a.timeout)
        for i, log in enumerate(logs)
    ]
    rng = random.Random(a.seed)
    doc["workloads"][name]["ready_s"] = time.monotonic() - t_start
    doc["workloads"][name]["mps_servers"] = mps_servers()  # None: no --mps
    try:
        for rnd, ps in _schedule(a, sets):
            blocks = []
            if a.order == "random":  # no fixed period for a slow swing to line up with
                one = rng.randrange(2)
                order = (one, 1 - one)
            else:
                order = (0, 1) if rnd % 2 == 0 else (1, 0)
            for which in order:
                time.sleep(a.settle + rng.uniform(0, a.jitter))  # the last tear-down settles
                r: dict = {"traced_copy": "ab"[which]}
                r.update(_traced_block(a, ps, procs[which].pid, trace, block_s))
                blocks.append((which, r))
            for log, p in zip(logs, procs, strict=True):
                _settle(log, max(r["hi_ns"] for _, r in blocks), p)
            steps = [attach.read_steps(log) for log in logs]
            traced, untraced = [], []
            for which, r in blocks:
                t = attach.block(steps[which], r["lo_ns"], r["hi_ns"])
                u = attach.block(steps[1 - which], r["lo_ns"], r["hi_ns"])
                r.update(traced_rate=t.rate, untraced_rate=u.rate, steps=t.steps)
                traced.append(t.rate)
                untraced.append(u.rate)
            ok = all(traced) and all(untraced)
            base = {"workload": name, "round": rnd, "warmup": rnd < a.warmup}
            gm = _geomean if ok else (lambda _xs: None)
            doc["runs"].append({**base, "set": "untraced", "for": ps, "throughput": gm(untraced)})
            # the traced run: the costs as attach mode keeps them, the first block's
            first = blocks[0][1]
            doc["runs"].append(
                {**first, **base, "set": ps, "throughput": gm(traced),
                 "blocks": [r for _, r in blocks]}
            )  # fmt: skip
            print(
                f"harness: {name} round {rnd} {ps}: untraced {gm(untraced)} "
                f"traced {gm(traced)} ({first.get('events')} events)",
                file=sys.stderr,
                flush=True,
            )
            save()
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a copy of {name} exited during the matrix")
    finally:
        for p in procs:
            attach.stop(p)
        _keep_steps(a, {log: f"{name}.{log.stem}.steps" for log in logs})


class Mps:
    """An MPS control daemon for the matrix (--mps): the workload's copies then share the GPU
    as one process's streams do, instead of taking turns in time slices.

    Its pipe and log directories are private, so a daemon someone else runs is not
    touched; the workloads find it through CUDA_MPS_PIPE_DIRECTORY."""

    def __init__(self, root: Path) -> None:
        self.env = {
            "CUDA_MPS_PIPE_DIRECTORY": str(root / "mps-pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(root / "mps-log"),
        }

    def __enter__(self) -> Mps:
        for d in self.env.values():
            Path(d).mkdir(parents=True, exist_ok=True)
        exe = shutil.which("nvidia-cuda-mps-control")
        if exe is None:
            raise SystemExit("harness: --mps: nvidia-cuda-mps-control is not on PATH")
        r = subprocess.run([exe, "-d"], env={**os.environ, **self.env}, capture_output=True,
                           text=True)  # fmt: skip
        if r.returncode:
            raise SystemExit(f"harness: --mps: {exe} -d failed: {r.stderr.strip()}")
        os.environ.update(self.env)  # the workloads' copies inherit it
        self.exe = exe
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([self.exe], input="quit\n", env={**os.environ, **self.env},
                       capture_output=True, text=True, timeout=60)  # fmt: skip
        for k in self.env:
            os.environ.pop(k, None)


def mps_servers() -> list[str] | None:
    """The MPS servers' pids (a client's first CUDA call starts one), or None without --mps."""
    if "CUDA_MPS_PIPE_DIRECTORY" not in os.environ:
        return None
    r = subprocess.run(["nvidia-cuda-mps-control"], input="get_server_list\n",
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    return r.stdout.split()


def _pinned(a: argparse.Namespace, copy: int) -> list[str]:
    """taskset's prefix for a copy of the workload (--cpus A[:B]: copy 0 on A, copy 1 on B)."""
    if not a.cpus:
        return []
    lists = a.cpus.split(":")
    return ["taskset", "-c", lists[min(copy, len(lists) - 1)]]


def _geomean(xs: list) -> float:
    return float(xs[0] * xs[1]) ** 0.5


def _settle(log: Path, hi_ns: int, proc, timeout: float = 30.0) -> None:
    """Wait until the workload has logged a step ending after hi_ns (its steps are buffered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        steps = attach.read_steps(log)
        if steps and steps[-1][1] >= hi_ns:
            return
        time.sleep(0.1)


def summarize(runs: list[dict]) -> list[dict]:
    """Per workload and probe set: the lists, the slowdown and its CI, the costs."""
    rows = []
    keys = sorted({(r["workload"], r["set"]) for r in runs if r["set"] != "untraced"})
    for wl, ps in keys:
        pairs = []
        for r in runs:
            if r["workload"] != wl or r["set"] != ps or r["warmup"]:
                continue
            u = next(
                (
                    x
                    for x in runs
                    if x["workload"] == wl
                    and x["set"] == "untraced"
                    and x["round"] == r["round"]
                    and x.get("for", ps) == ps  # attach mode: each set its own block
                ),
                None,
            )
            if u and u.get("throughput") and r.get("throughput"):
                pairs.append((u, r))
        if not pairs:
            continue
        untraced = [u["throughput"] for u, _ in pairs]
        traced = [t["throughput"] for _, t in pairs]
        sd = slowdown(untraced, traced)
        costs = [t.get("cost") or {} for _, t in pairs]

        def med(vals):
            vals = [v for v in vals if v is not None]
            return statistics.median(vals) if vals else None

        rows.append(
            {
                "workload": wl,
                "set": ps,
                "untraced": untraced,
                "traced": traced,
                "slowdown": sd.median,
                "ci95": [sd.low, sd.high],
                "events": med(t.get("events") for _, t in pairs),
                "events_per_s": med(t.get("events_per_s") for _, t in pairs),
                "recorder_cpu_s": med(
                    (c["recorder_cpu_running"]["user_s"] + c["recorder_cpu_running"]["sys_s"])
                    if c.get("recorder_cpu_running")
                    else None
                    for c in costs
                ),
                "startup_s": med(c.get("startup_s") for c in costs),
                # in-kernel time of the recorder's BPF programs, all CPUs, where
                # kernel.bpf_stats_enabled=1: what the probes take from the machine
                "bpf_ms_per_s": med(_bpf_ms_per_s(t) for _, t in pairs),
                "drops_max": max((t.get("drops") or 0) for _, t in pairs),
                "recorder_cpu_share": med(t.get("recorder_cpu_share") for _, t in pairs),
                # the workload's own spread: untraced blocks' (max - min) / median
                "untraced_spread": (max(untraced) - min(untraced)) / statistics.median(untraced),
            }
        )
    return rows


def _bpf_ms_per_s(traced: dict) -> float | None:
    bpf = (traced.get("cost") or {}).get("bpf") or {}
    ns, span = bpf.get("run_time_ns"), traced.get("span_s")
    return ns / 1e6 / span if ns is not None and span else None


def null_rows(runs: list[dict]) -> list[dict]:
    """The instrument's own resolution: untraced block against untraced block (A/A).

    In attach mode each round has an untraced block per probe set; the first two sets'
    blocks of a round form a pair with no recorder in either, whose "slowdown" is the
    noise the real pairs carry too."""
    rows = []
    for wl in sorted({r["workload"] for r in runs}):
        by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            if r["workload"] == wl and r["set"] == "untraced" and "for" in r and not r["warmup"]:
                if r.get("throughput"):
                    by_round.setdefault(r["round"], {})[r["for"]] = r["throughput"]
        pairs = [sorted(v.items()) for v in by_round.values() if len(v) >= 2]
        if len(pairs) < 2:
            continue
        a = [p[0][1] for p in pairs]
        b = [p[1][1] for p in pairs]
        sd = slowdown(a, b)
        rows.append(
            {
                "workload": wl,
                "set": f"A/A: untraced ({pairs[0][0][0]}) vs untraced ({pairs[0][1][0]})",
                "untraced": a,
                "traced": b,
                "slowdown": sd.median,
                "ci95": [sd.low, sd.high],
                "events_per_s": None,
                "recorder_cpu_s": None,
                "startup_s": None,
            }
        )
    return rows


def _relative(argv: list[str]) -> list[str]:
    """Paths inside the checkout as the repository names them."""
    root = f"{REPO}{os.sep}"
    return [a.removeprefix(root) for a in argv]


def machine() -> dict:
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        gpu = None
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def table(doc: dict) -> str:
    lines = [
        "| workload | probe set | pairs | untraced (median) | slowdown, median | 95% CI "
        "| events/s | BPF ms/s | recorder CPU | start-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    units = {k: v.get("unit", "") for k, v in doc.get("workloads", {}).items()}
    for r in doc["summary"]:
        ev = r["events_per_s"]
        cpu, st, bpf = r["recorder_cpu_s"], r["startup_s"], r.get("bpf_ms_per_s")
        label = "A/A: no recorder in either block" if r["set"] == NONE else r["set"]
        lines.append(
            f"| {r['workload']} | {label} | {len(r['untraced'])} "
            f"| {statistics.median(r['untraced']):.4g} {units.get(r['workload'], '')} "
            f"| {_pct(r['slowdown'])} | {_pct(r['ci95'][0])} .. {_pct(r['ci95'][1])} "
            f"| {'-' if ev is None else f'{ev:,.0f}'} "
            f"| {'-' if bpf is None else f'{bpf:.1f}'} "
            f"| {'-' if cpu is None else f'{cpu:.2f} s'} | {'-' if st is None else f'{st:.2f} s'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="memcpy-4k,input-pipeline,offload-decode,flexgen")
    ap.add_argument(
        "--mode",
        choices=("attach", "twin", "process"),
        default="attach",
        help="pairs of blocks within one workload process (record -p); two copies at "
        "once, one traced (twin); or whole runs (process)",
    )
    ap.add_argument("--block", type=float, help="attach mode: seconds per block (per workload)")
    ap.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="attach mode: seconds left out after the probes are attached or taken down",
    )
    ap.add_argument("--keep-steps", metavar="DIR", help="attach mode: copy each step log here")
    ap.add_argument(
        "--cpus",
        metavar="LIST[:LIST]",
        help="pin the workload to these CPUs (taskset -c); twin mode: copy a on the first "
        "list, copy b on the second",
    )
    ap.add_argument(
        "--order",
        choices=("abba", "random"),
        default="abba",
        help="twin mode: which copy is traced first in a round, alternating (abba) or drawn "
        "at random (--seed), so a swing of the two copies' shares cannot line up with it",
    )
    ap.add_argument("--jitter", type=float, default=0.0, help="twin mode: up to S s more settle")
    ap.add_argument("--seed", type=int, default=1, help="twin mode: for --order random, --jitter")
    ap.add_argument(
        "--mps",
        action="store_true",
        help="run the workloads under an MPS daemon started for the matrix (twin mode: "
        "without it two CUDA processes take turns on the GPU)",
    )
    ap.add_argument("--sets", default="default,kernel", help=f"comma list of {', '.join(SETS)}")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="rounds discarded first")
    ap.add_argument("--seconds", type=float, default=4.0, help="each workload's timed window")
    ap.add_argument("--timeout", type=float, default=120.0, help="per run")
    ap.add_argument("--recorder", default="iommu-trace", help="the command that records")
    ap.add_argument("--base-recorder", help="another recorder, for the base:SET probe sets")
    ap.add_argument(
        "--pairs-for",
        action="append",
        default=[],
        metavar="SET=N",
        help="fewer pairs for one probe set (its runs stop after N rounds)",
    )
    ap.add_argument("--out", help="JSON results (rewritten after every run)")
    ap.add_argument(
        "--table", metavar="JSON", nargs="+", help="print the Markdown table of results files"
    )
    a = ap.parse_args(argv)
    if a.table:  # several files: one table, each workload and set from the file holding it
        docs = [json.loads(Path(f).read_text()) for f in a.table]
        # recomputed from the runs, so a file written before a column existed has it too
        rows = [r for d in docs for r in summarize(d["runs"])]
        # attach mode's untraced blocks pair up; twin mode measures A/A with the none set
        rows += [r for d in docs if d.get("mode") == "attach" for r in null_rows(d["runs"])]
        units = {k: v for d in docs for k, v in d.get("workloads", {}).items()}
        print(table({"workloads": units, "summary": rows}))
        return 0
    catalog = workloads(a.seconds)
    names = a.workloads.split(",")
    sets = a.sets.split(",")
    unknown = [n for n in names if n not in catalog] + [
        s for s in sets if s.removeprefix("base:") not in SETS
    ]
    if unknown:
        ap.error(f"unknown workload or probe set: {', '.join(unknown)}")
    if a.mode == "process" and NONE in sets:
        ap.error(f"--mode process: the {NONE} set is for attach and twin modes")
    limit = {k: int(v) for k, v in (x.split("=") for x in a.pairs_for)}
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            ["python3", "-m", "iommu_trace.recorder_cost.harness", *(argv or sys.argv[1:])]
        ),
        "machine": machine(),
        "mode": a.mode,
        "settle_s": a.settle if a.mode != "process" else None,
        "pinned_cpus": a.cpus,
        **({"order": a.order, "jitter_s": a.jitter, "seed": a.seed} if a.mode == "twin" else {}),
        "pairs": a.pairs,
        "warmup_rounds": a.warmup,
        "workloads": {
            n: {
                "argv": _relative(
                    [*catalog[n].argv, *(catalog[n].serve if a.mode != "process" else ())]
                ),
                "unit": catalog[n].unit,
                **({"block_s": a.block or catalog[n].block_s} if a.mode != "process" else {}),
            }
            for n in names
        },
        "sets": {s: SETS[s.removeprefix("base:")] for s in sets},
        "runs": [],
        "summary": [],
    }

    def save() -> None:
        if a.out:
            doc["summary"] = summarize(doc["runs"])
            Path(a.out).write_text(json.dumps(doc, indent=1))

    tmp = Path(tempfile.mkdtemp(prefix="recorder-cost-"))
    mps = Mps(tmp) if a.mps else contextlib.nullcontext()
    doc["mps"] = bool(a.mps)
    with mps:
        for name in names:
            wl = catalog[name]
            if a.mode in ("attach", "twin"):
                try:
                    (attach_matrix if a.mode == "attach" else twin_matrix)(
                        name, wl, sets, a, doc, save
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    doc["workloads"][name]["error"] = str(e)
                    print(f"harness: {name}: {e}", file=sys.stderr, flush=True)
                save()
                continue
            for rnd in range(a.warmup + a.pairs):
                active = [s for s in sets if rnd < a.warmup + limit.get(s, a.pairs)]
                order = [None, *active] if rnd % 2 == 0 else [*reversed(active), None]
                for ps in order:
                    rec = shlex.split(
                        a.base_recorder if ps and ps.startswith("base:") else a.recorder
                    )
                    r = run_one(wl, ps, rec, tmp, a.timeout)
                    r.update(workload=name, set=ps or "untraced", round=rnd, warmup=rnd < a.warmup)
                    doc["runs"].append(r)
                    print(
                        f"harness: {name} round {rnd} {r['set']}: {r['throughput']} "
                        f"(rc {r['rc']}, {r['wall_s']:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    save()
    doc["summary"] = summarize(doc["runs"])
    save()
    print(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
