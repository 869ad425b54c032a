"""Workloads the lab runs inside the guest: direct-I/O reads of the NVMe disk, or a command.

Run in the guest as `python -m iommu_trace.lab.workloads dd|sweep|run ... --result FILE`.
Each run prints one machine-readable line,
    IOMMU_TRACE_WORKLOAD {"bs": 65536, "bytes": ..., "elapsed_s": ..., "t_start_ns": ...}
and the whole result goes to FILE as JSON.  t_start_ns/t_end_ns are CLOCK_MONOTONIC,
the clock bpf_ktime_get_ns() reads, so runs line up with the trace's timestamps.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

RESULT_TAG = "IOMMU_TRACE_WORKLOAD"
DEVICE = "/dev/nvme0n1"
SWEEP_SIZES = [4 << 10 << i for i in range(9)]  # 4 KiB .. 1 MiB
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """'64k' -> 65536 (dd's binary suffixes; 'K'/'KiB' accepted too)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text.lower())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"bad size {text!r} (examples: 4096, 64k, 1M)")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def dd_argv(bs: int, count: int, device: str = DEVICE) -> list[str]:
    # iflag=direct: every read is DMAed straight into dd's buffer, so every
    # request maps and unmaps through the IOMMU (no page cache in between)
    return ["dd", f"if={device}", "of=/dev/null", f"bs={bs}", f"count={count}", "iflag=direct"]


def _dd_bytes(stderr: str) -> int | None:
    m = re.search(r"^(\d+) bytes", stderr, re.MULTILINE)
    return int(m.group(1)) if m else None


def run_one(argv: list[str], shell: bool = False) -> tuple[int, dict]:
    t0 = time.monotonic_ns()
    proc = subprocess.run(
        argv[0] if shell else argv, shell=shell, stderr=subprocess.PIPE, text=True
    )
    t1 = time.monotonic_ns()
    sys.stderr.write(proc.stderr)
    run = {
        "bytes": _dd_bytes(proc.stderr) if not shell else None,
        "elapsed_s": (t1 - t0) / 1e9,
        "t_start_ns": t0,
        "t_end_ns": t1,
        "exit_status": proc.returncode,
    }
    return proc.returncode, run


def dd(bs: int, count: int, device: str = DEVICE) -> tuple[int, list[dict]]:
    rc, run = run_one(dd_argv(bs, count, device))
    return rc, [{"bs": bs, "count": count, **run}]


def sweep(total: int, device: str = DEVICE, sizes: list[int] = SWEEP_SIZES) -> tuple[int, list]:
    """Read `total` bytes at each block size: same data, more or fewer maps and flushes."""
    runs = []
    for bs in sizes:
        rc, one = dd(bs, max(1, total // bs), device)
        runs += one
        if rc:
            return rc, runs
    return 0, runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iommu_trace.lab.workloads")
    p.add_argument("--result", help="write the result JSON here")
    sub = p.add_subparsers(dest="kind", required=True)
    d = sub.add_parser("dd")
    d.add_argument("--bs", default="64k")
    d.add_argument("--count", type=int, default=2000)
    d.add_argument("--device", default=DEVICE)
    s = sub.add_parser("sweep")
    s.add_argument("--total", default="64M", help="bytes read at each block size")
    s.add_argument("--device", default=DEVICE)
    r = sub.add_parser("run")
    r.add_argument("command", help="shell command")
    a = p.parse_args(argv)

    if a.kind == "dd":
        rc, runs = dd(parse_size(a.bs), a.count, a.device)
        result = {"workload": "dd", "device": a.device}
    elif a.kind == "sweep":
        rc, runs = sweep(parse_size(a.total), a.device)
        result = {"workload": "sweep", "device": a.device, "total": parse_size(a.total)}
    else:
        rc, run = run_one([a.command], shell=True)
        runs = [run]
        result = {"workload": "run", "command": a.command}
    result.update(exit_status=rc, runs=runs)
    for run in runs:
        print(RESULT_TAG, json.dumps(run), flush=True)
    if a.result:
        with open(a.result, "w") as f:
            json.dump(result, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
