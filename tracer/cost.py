"""What a recording cost: start-up, the recorder's own CPU, the workload's CPU, BPF run time.

Stored in the trace's metadata under "cost", so `info` can say what the
recording cost next to what it recorded (docs/recorder-cost.md measures the
slowdown itself).
"""

from __future__ import annotations

import os
import resource
import time

from ..system.procfs import stat_fields

_BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled"


def boottime_s() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start_s(pid: int | str = "self") -> float | None:
    """When the process started, on CLOCK_BOOTTIME (/proc/PID/stat field 22)."""
    rest = stat_fields(pid)
    try:
        return int(rest[19]) / os.sysconf("SC_CLK_TCK") if rest else None
    except (IndexError, ValueError):
        return None


def process_cpu(pid: int) -> dict[str, float] | None:
    """A running process's own CPU seconds, all its threads (/proc/PID/stat fields 14-15);
    None once it is gone."""
    rest = stat_fields(pid)
    tick = os.sysconf("SC_CLK_TCK")
    try:
        return {"user_s": int(rest[11]) / tick, "sys_s": int(rest[12]) / tick} if rest else None
    except (IndexError, ValueError):
        return None


def self_cpu() -> dict[str, float]:
    """The recorder's own CPU seconds (all its threads), not its children's."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": ru.ru_utime, "sys_s": ru.ru_stime}


def since(now: dict[str, float], then: dict[str, float] | None) -> dict[str, float] | None:
    return None if then is None else {k: now[k] - then[k] for k in now}


def child_cpu(ru) -> dict[str, float | int]:
    """The command's CPU seconds and context switches, from os.wait4's rusage
    (the command and the descendants it waited for)."""
    return {
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "involuntary_switches": ru.ru_nivcsw,
        "voluntary_switches": ru.ru_nvcsw,
    }


def _fdinfo(fd: int) -> dict[str, int]:
    """A BPF program's numeric /proc/self/fdinfo fields (run_cnt, recursion_misses...)."""
    out = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, _, val = line.partition(":")
                if val.strip().isdigit():
                    out[key] = int(val)
    except OSError:
        pass
    return out


def recursion_misses(prog_fd: int) -> int | None:
    """Runs the kernel skipped for this BPF program (fdinfo's recursion_misses, 5.12+,
    counted whether or not bpf_stats is on). A kprobe or tracepoint program does not
    run while another such program runs on the same CPU (bpf_prog_active): an
    interrupt's DMA unmap landing in one is an event the trace never sees, nor
    the per-probe counters it bumps. None: this kernel does not say."""
    return _fdinfo(prog_fd).get("recursion_misses")


def bpf_run_time(prog_fds: list[int]) -> dict[str, int] | None:
    """Kernel time spent in our BPF programs, where kernel.bpf_stats_enabled=1
    (it costs ~20 ns a run, so it is off by default and we never turn it on)."""
    try:
        with open(_BPF_STATS) as f:
            if f.read().strip() != "1":
                return None
    except OSError:
        return None
    info = [_fdinfo(fd) for fd in prog_fds]
    return {k: sum(i.get(k, 0) for i in info) for k in ("run_time_ns", "run_cnt")}
