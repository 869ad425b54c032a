"""Overhead harness: real workloads untraced and under `iommu-trace record`, interleaved.

A benchmark, not a test: run it by hand on the machine whose figures you quote
(as root: recording needs BPF), then put the table into docs/recorder-cost.md.

    sudo python3 -m iommu_trace.recorder_cost.harness --pairs 5 \\
        --sets default,kernel --out recorder_cost/results/MACHINE-DATE.json
    python3 -m iommu_trace.recorder_cost.harness --table recorder_cost/results/MACHINE-DATE.json

Each round runs the workload once untraced and once under each probe set; the
first --warmup rounds are discarded (page cache, GPU clocks, compiler caches).
Even rounds run untraced first, odd rounds last (ABBA), so linear drift of the
machine does not favour either side. Each traced run is paired with its
round's untraced run; the slowdown of a pair is untraced / traced throughput
- 1, as the workload itself reports it (--workload-result JSON). Reported per
workload and probe set: the median slowdown over pairs with a bootstrap 95%
CI, events per second, and what the trace says the recording cost (start-up,
recorder CPU). Raw numbers go to --out after every run, so an interrupted
matrix keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .stats import slowdown

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Workload:
    argv: list[str]  # from the repository root
    key: str = "throughput"  # the result JSON's throughput field
    unit: str = ""


def workloads(seconds: float) -> dict[str, Workload]:
    w = str(REPO / "recorder_cost" / "workloads")
    s = ["--seconds", str(seconds)]
    return {
        "memcpy-4k": Workload([PY, f"{w}/memcpy_loop.py", *s], unit="copies/s"),
        "input-pipeline": Workload([PY, f"{w}/input_pipeline.py", *s], unit="samples/s"),
        "offload-decode": Workload([PY, f"{w}/offload_decode.py", *s], unit="tokens/s"),
        # FlexGen decodes a fixed number of tokens; its decode phase is the window
        "flexgen": Workload(
            [
                PY,
                str(REPO / "examples" / "flexgen_run.py"),
                "--model",
                "facebook/opt-1.3b",
                "--percent",
                *"100 0 0 100 100 0".split(),
                "--prompt-len",
                "256",
                "--gen-len",
                "32",
                "--gpu-batch-size",
                "8",
            ],
            key="decode_tok_s",
            unit="tokens/s",
        ),
    }


PER_COPY = ",".join(
    ["cudaMemcpy", "cudaMemcpyAsync", "cuMemcpyHtoD", "cuMemcpyDtoH"]
    + ["cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuMemcpyAsync"]
)
# Probe sets: `record` flags. "base:SET" runs SET with --base-recorder (before/after).
SETS = {
    "default": [],
    "kernel": ["--no-probe", "syscall,cuda-driver,cuda-runtime,process"],
    "no-syscall": ["--no-probe", "syscall"],
    "per-copy": ["--probe", PER_COPY],
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
    if probe_set is not None and trace.exists():
        try:
            m = _meta(str(trace))
        except Exception as e:  # a broken trace is a result too
            out["trace_error"] = str(e)
        else:
            span = (m.get("end_mono_ns", 0) - m.get("start_mono_ns", 0)) / 1e9
            out.update(
                events=m.get("events_written"),
                events_per_s=(m.get("events_written") or 0) / span if span > 0 else None,
                counts=m.get("counts"),
                drops=sum((m.get("drops") or {}).values()) + (m.get("lost") or 0),
                cost=m.get("cost"),
            )
        for p in tmp.glob("run.iot*"):
            p.unlink()
    return out


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
                    if x["workload"] == wl and x["set"] == "untraced" and x["round"] == r["round"]
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
                "drops_max": max((t.get("drops") or 0) for _, t in pairs),
            }
        )
    return rows


def _relative(argv: list[str]) -> list[str]:
    """Paths inside the checkout as the repository names them."""
    root = f"{REPO}{os.sep}"
    return [a.removeprefix(root) for a in argv]


def machine() -> dict:
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
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
        "| events/s | recorder CPU | start-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    units = {k: v.get("unit", "") for k, v in doc.get("workloads", {}).items()}
    for r in doc["summary"]:
        ev = r["events_per_s"]
        cpu, st = r["recorder_cpu_s"], r["startup_s"]
        lines.append(
            f"| {r['workload']} | {r['set']} | {len(r['untraced'])} "
            f"| {statistics.median(r['untraced']):.4g} {units.get(r['workload'], '')} "
            f"| {_pct(r['slowdown'])} | {_pct(r['ci95'][0])} .. {_pct(r['ci95'][1])} "
            f"| {'-' if ev is None else f'{ev:,.0f}'} "
            f"| {'-' if cpu is None else f'{cpu:.2f} s'} | {'-' if st is None else f'{st:.2f} s'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="memcpy-4k,input-pipeline,offload-decode,flexgen")
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
    ap.add_argument("--table", metavar="JSON", help="print the Markdown table of a results file")
    a = ap.parse_args(argv)
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return 0
    catalog = workloads(a.seconds)
    names = a.workloads.split(",")
    sets = a.sets.split(",")
    unknown = [n for n in names if n not in catalog] + [
        s for s in sets if s.removeprefix("base:") not in SETS
    ]
    if unknown:
        ap.error(f"unknown workload or probe set: {', '.join(unknown)}")
    limit = {k: int(v) for k, v in (x.split("=") for x in a.pairs_for)}
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            ["python3", "-m", "iommu_trace.recorder_cost.harness", *(argv or sys.argv[1:])]
        ),
        "machine": machine(),
        "pairs": a.pairs,
        "warmup_rounds": a.warmup,
        "workloads": {
            n: {"argv": _relative(catalog[n].argv), "unit": catalog[n].unit} for n in names
        },
        "sets": {s: SETS[s.removeprefix("base:")] for s in sets},
        "runs": [],
        "summary": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="recorder-cost-"))
    for name in names:
        wl = catalog[name]
        for rnd in range(a.warmup + a.pairs):
            active = [s for s in sets if rnd < a.warmup + limit.get(s, a.pairs)]
            order = [None, *active] if rnd % 2 == 0 else [*reversed(active), None]
            for ps in order:
                rec = shlex.split(a.base_recorder if ps and ps.startswith("base:") else a.recorder)
                r = run_one(wl, ps, rec, tmp, a.timeout)
                r.update(workload=name, set=ps or "untraced", round=rnd, warmup=rnd < a.warmup)
                doc["runs"].append(r)
                print(
                    f"harness: {name} round {rnd} {r['set']}: {r['throughput']} "
                    f"(rc {r['rc']}, {r['wall_s']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if a.out:
                    doc["summary"] = summarize(doc["runs"])
                    Path(a.out).write_text(json.dumps(doc, indent=1))
    doc["summary"] = summarize(doc["runs"])
    if a.out:
        Path(a.out).write_text(json.dumps(doc, indent=1))
    print(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
