"""Workloads the lab runs inside the guest: direct-I/O reads of the NVMe disk, long
scatter lists mapped on it by the lab's module (lab/iommu_lab_sg.c), or a command.

Run in the guest as `python -m iommu_trace.lab.workloads --result FILE dd|sweep|sg|run ...`,
or `... steps PLAN.json` for several in one recording (a JSON list of {"kind": ..., options}).
Each run prints one machine-readable line,
    IOMMU_TRACE_WORKLOAD {"bs": 65536, "bytes": ..., "elapsed_s": ..., "t_start_ns": ...}
and the whole result goes to FILE as JSON.  t_start_ns/t_end_ns are CLOCK_MONOTONIC,
the clock bpf_ktime_get_ns() reads, so runs line up with the trace's timestamps.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

RESULT_TAG = "IOMMU_TRACE_WORKLOAD"
DEVICE = "/dev/nvme0n1"
SWEEP_SIZES = [4 << 10 << i for i in range(9)]  # 4 KiB .. 1 MiB
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
SG_MODULE = "iommu_lab_sg"  # lab/iommu_lab_sg.c, built by lab/kmodule.py
SG_PAGE = 4096  # each list entry is one separate page


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


def nvme_pci() -> str | None:
    """The NVMe controller's PCI address (the device the workloads DMA with)."""
    for ctrl in sorted(glob.glob("/sys/class/nvme/nvme*")):
        return os.path.basename(os.path.realpath(os.path.join(ctrl, "device")))
    return None


def _segments() -> int | None:
    try:
        with open(f"/sys/module/{SG_MODULE}/parameters/mapped") as f:
            return int(f.read().split(",")[0])
    except (OSError, ValueError):
        return None


def kprobes() -> list[str] | None:
    """The kernel's registered kprobes, as debugfs lists them, addresses dropped (KASLR):
    "k intel_iommu_tlb_sync+0x4 [FTRACE]". Kept per sg run: a kprobe that stops shows
    here as gone or [DISABLED] (BCC 0.26 closing the recorder's fd did that on 6.12;
    docs/lab.md)."""
    path = "/sys/kernel/debug/kprobes/list"
    if not os.path.exists(path):  # the guest is ours: mount debugfs where it is not
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"],
                       capture_output=True, check=False)  # fmt: skip
    try:
        with open(path) as f:
            return [ln.split(None, 1)[1].strip() for ln in f if ln.split(None, 1)[1:]]
    except OSError:
        return None


def _perf_fds(pid: int) -> int | None:
    """The perf events process pid holds: under `record`, the parent's kprobes and
    tracepoints. Beside kprobes(), it tells a probe the recorder closed from one the
    kernel took down."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    n = 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
        except OSError:
            pass
    return n


def sg(module: str, nents: list[int], maps: int, dev: str | None = None) -> tuple[int, list]:
    """Load the lab's module once per list length: it maps and unmaps `maps` times, then exits.

    Each run's bytes are what the module mapped: nents separate 4 KiB pages, `maps` times.
    """
    dev = dev or nvme_pci()
    if dev is None:
        print("sg: no NVMe controller in /sys/class/nvme", file=sys.stderr)
        return 1, []
    runs = []
    for n in nents:
        argv = ["insmod", module, f"dev={dev}", f"nents={n}", f"count={maps}"]
        rc, run = run_one(argv)
        run.update(
            workload="sg", dev=dev, nents=n, maps=maps, map_bytes=n * SG_PAGE,
            bytes=n * SG_PAGE * maps if rc == 0 else None, segments=_segments(),
        )  # fmt: skip
        runs.append(run)
        if rc:
            return rc, runs
        subprocess.run(["rmmod", SG_MODULE], check=False)
        run["kprobes_after_rmmod"] = kprobes()
        run["recorder_perf_fds"] = _perf_fds(os.getppid())
    return 0, runs


def run_step(step: dict) -> tuple[int, list[dict], dict]:
    """One workload: (status, runs, what it was)."""
    kind = step["kind"]
    device = step.get("device", DEVICE)
    if kind == "dd":
        rc, runs = dd(parse_size(str(step.get("bs", "64k"))), int(step.get("count", 2000)), device)
        return rc, runs, {"workload": "dd", "device": device}
    if kind == "sweep":
        total = parse_size(str(step.get("total", "64M")))
        rc, runs = sweep(total, device)
        return rc, runs, {"workload": "sweep", "device": device, "total": total}
    if kind == "sg":
        nents = [int(n) for n in step["nents"]]
        rc, runs = sg(step["module"], nents, int(step.get("maps", 8)), step.get("dev"))
        return rc, runs, {"workload": "sg", "nents": nents, "maps": int(step.get("maps", 8))}
    if kind == "run":
        rc, run = run_one([step["command"]], shell=True)
        return rc, [run], {"workload": "run", "command": step["command"]}
    raise ValueError(f"unknown workload {kind!r}")


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
    g = sub.add_parser("sg")
    g.add_argument("--module", required=True, help=f"{SG_MODULE}.ko built for this kernel")
    g.add_argument("--nents", default="1024", help="list lengths, comma-separated")
    g.add_argument("--maps", type=int, default=8, help="maps and unmaps per length")
    g.add_argument("--dev", help="PCI device (default: the NVMe controller)")
    r = sub.add_parser("run")
    r.add_argument("command", help="shell command")
    st = sub.add_parser("steps")
    st.add_argument("plan", help='JSON list of workloads, e.g. [{"kind": "dd", "count": 200}]')
    a = p.parse_args(argv)

    if a.kind == "steps":
        with open(a.plan) as f:
            steps = json.load(f)
    else:
        step = {k: v for k, v in vars(a).items() if k not in ("result",) and v is not None}
        if a.kind == "sg":
            step["nents"] = a.nents.split(",")
        steps = [step]
    rc, runs, parts = 0, [], []
    for step in steps:
        rc, more, what = run_step(step)
        runs += more
        parts.append(what)
        if rc:
            break
    # "plan", not "steps": a sidecar's "steps" are FlexGen's generation steps (phases)
    result = parts[0] if len(parts) == 1 else {"workload": "plan", "plan": parts}
    result.update(exit_status=rc, runs=runs)
    for run in runs:
        print(RESULT_TAG, json.dumps(run), flush=True)
    if a.result:
        with open(a.result, "w") as f:
            json.dump(result, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
