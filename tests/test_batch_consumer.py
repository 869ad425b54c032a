"""The batch consumer on this machine's kernel: the ring buffer read through mmap, real events.

A loop of getppid() (recorder_cost/loop.c) under the benchmark catalog's raw
tracepoints on system call entry and exit gives events whose order and values
are known: per call one sys_enter with cmd = the call's number, then one
sys_exit with ret = the loop's parent (the recorder).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from iommu_trace.tracefile.reader import load

from conftest import RATE_CATALOG as CATALOG
from conftest import SYS_GETPPID, cli, requires_bpf

pytestmark = requires_bpf


def record(out: Path, *args: str, cmd: tuple[str, ...]) -> subprocess.CompletedProcess:
    proc = cli("record", "--catalog", CATALOG, "-o", str(out), *args, "--", *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc


def loop_events(t, loop_pid: int | None = None):
    """The loop's getppid calls: its sys_enter/sys_exit events from its first getppid on."""
    ev = t.events
    if loop_pid is None:
        loop_pid = int(ev.loc[ev.comm == "loop", "pid"].iloc[0])
    mine = ev[ev.pid == loop_pid].reset_index(drop=True)
    first = mine.index[(mine.probe == "sys_enter") & (mine["cmd"] == SYS_GETPPID)][0]
    return mine.iloc[first:]


def assert_calls_in_order(calls, strict: bool) -> None:
    """Every event is a getppid entry or exit of one thread, in time order, none twice;
    strict: entry and exit alternate (nothing was dropped between)."""
    assert calls.tid.nunique() == 1
    assert calls.ts_ns.is_monotonic_increasing and calls.ts_ns.is_unique
    enters, exits = calls[calls.probe == "sys_enter"], calls[calls.probe == "sys_exit"]
    getppid = enters["cmd"] == SYS_GETPPID
    # the loop ends in printf/usleep/exit: every call before its last getppid is one
    last = enters.index[getppid][-1]
    assert getppid[enters.index <= last].all()
    ppid = exits.loc[exits.index <= last + 1, "ret"]
    assert ppid.nunique() == 1 and ppid.iloc[0] > 1  # getppid() returned the recorder
    if strict:
        probes = calls.loc[: last + 1, "probe"].tolist()
        assert probes == ["sys_enter", "sys_exit"] * (len(probes) // 2)


@pytest.mark.skipif(SYS_GETPPID is None, reason="getppid's number on this architecture")
def test_a_burst_has_every_event_in_order(loop, tmp_path):
    out = tmp_path / "burst.iot"
    n = 40_000  # 80,000 events at 40,000 a second: far below what the consumer takes
    record(out, "--probe", "sys_enter,sys_exit", cmd=(loop, "getppid", str(n), "20000"))
    t = load(str(out))
    assert t.meta["buffer"] == "ringbuf"
    assert t.meta["drops"] == {"sys_enter": 0, "sys_exit": 0}
    in_file = t.value_counts("probe")
    assert in_file == t.meta["counts"]  # every event the kernel counted is in the file
    calls = loop_events(t)
    assert (calls.probe == "sys_enter").sum() >= n
    assert_calls_in_order(calls, strict=True)
    assert calls.kstack_id.isna().all() and calls.ustack_id.isna().all()


@pytest.mark.skipif(SYS_GETPPID is None, reason="getppid's number on this architecture")
def test_a_ring_that_wraps_reads_correctly(loop, tmp_path):
    out = tmp_path / "wrap.iot"
    pages, n = 8, 6_000  # a 32 KiB ring (186 events) and 12,000 events: 64 times around
    record(
        out,
        "--probe",
        "sys_enter,sys_exit",
        "--buffer-pages",
        str(pages),
        cmd=(loop, "getppid", str(n), "2000"),
    )
    t = load(str(out))
    counts, drops, in_file = t.meta["counts"], t.meta["drops"], t.value_counts("probe")
    for p in ("sys_enter", "sys_exit"):
        assert counts[p] == in_file[p] + drops[p]
    # what was read went 20 times around the ring at least (a loaded machine may drop some)
    assert sum(in_file.values()) * 176 > 20 * pages * os.sysconf("SC_PAGE_SIZE")
    assert_calls_in_order(loop_events(t), strict=not any(drops.values()))


def _frames(t, probe: str, column: str) -> list[list[str]]:
    ev = t.events
    return [list(s) for s in ev.loc[ev.probe == probe, column]]


def test_stacks_are_the_same_through_mmap_and_the_callback(known_calls, loop, tmp_path):
    """User stacks of a uprobe, resolved per chunk, are the frames BCC's per-event callback
    path (the perf buffer) gives; kernel stacks of a tracepoint are the system call's path
    through both. (Kernel frames between the program and the syscall depend on what else
    is attached to the tracepoint, other tracers included: only the path is compared.)"""
    syscall_path = ["syscall_trace_enter [kernel]", "do_syscall_64 [kernel]",
                    "entry_SYSCALL_64_after_hwframe [kernel]"]  # fmt: skip
    user = {}
    for buffer, args in (("ringbuf", ()), ("perf", ("--perf-buffer",))):
        u = tmp_path / f"u-{buffer}.iot"
        record(u, *args, "--uprobe", f"{known_calls}:iot_work", cmd=(known_calls, "30"))
        k = tmp_path / f"k-{buffer}.iot"
        record(k, *args, "--probe", "sys_enter_kstack", cmd=(loop, "getppid", "2000"))
        tu, tk = load(str(u)), load(str(k))
        assert tu.meta["buffer"] == tk.meta["buffer"] == buffer
        user[buffer] = _frames(tu, "iot_work", "ustack")
        calls = loop_events_of(tk, "sys_enter_kstack")
        assert len(calls) >= 2000
        assert all(list(s)[-3:] == syscall_path for s in calls.kstack)
    assert len(user["ringbuf"]) == 30 and user["ringbuf"] == user["perf"]
    assert all(s[0] == "iot_work [known_calls]" and "main [known_calls]" in s for s in user["perf"])


def loop_events_of(t, probe: str):
    """The loop's getppid entries seen by one probe."""
    ev = t.events
    return ev[(ev.probe == probe) & (ev.comm == "loop") & (ev["cmd"] == SYS_GETPPID)]


def test_lost_stacks_are_counted_and_said(loop, tmp_path):
    """A stack map of one entry keeps the first stack; every other one is a hash
    collision (or, racing for the first entry, finds the map full): counted per probe,
    a null stack id in the event, said by record and info."""
    out = tmp_path / "lost.iot"
    proc = record(
        out, "--probe", "sys_enter_kstack", "--stack-entries", "1", cmd=(loop, "getppid", "500")
    )
    t = load(str(out))
    ev = t.events
    ev = ev[ev.probe == "sys_enter_kstack"]  # others may take no stack (ioctl: none asked)
    lost = t.meta["stacks_lost"]["sys_enter_kstack"]
    nulls = int(ev.kstack_id.isna().sum() + ev.ustack_id.isna().sum())
    assert nulls >= 500 and sum(n for kinds in lost.values() for n in kinds.values()) == nulls
    assert set(lost) <= {"kernel", "user"}
    # The one entry's first insertion can race between CPUs: the loser finds the
    # free list empty (-ENOMEM, "full"), at most once a CPU (seen once in CI).
    # Every later distinct stack is a collision.
    full = sum(k.get("full", 0) for k in lost.values())
    assert all(set(k) <= {"collision", "full"} for k in lost.values())
    assert full <= (os.cpu_count() or 1) and nulls - full >= 500
    assert "stacks lost" in proc.stderr and "raise --stack-entries" in proc.stderr
    info = cli("info", str(out))
    assert f"{nulls} stacks lost" in info.stdout
    assert "stacks of sys_enter_kstack (hash collision)" in info.stdout


def test_sigkill_keeps_every_journaled_event_and_its_stacks(loop, tmp_path):
    out = tmp_path / "kill.iot"
    rec = subprocess.Popen(
        [sys.executable, "-m", "iommu_trace.cli", "record", "--catalog", CATALOG,
         "--probe", "sys_enter_ustack", "-o", str(out), "--",
         loop, "getppid", "10000000", "20000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 64 << 10):
        time.sleep(0.5)  # a few journaled batches
    time.sleep(1.0)
    rec.kill()
    rec.wait(timeout=30)
    t = load(str(out))
    ev = t.events
    for pid in set(ev.loc[ev.comm == "loop", "pid"]):  # the orphaned loop
        os.kill(int(pid), signal.SIGKILL)
    assert not t.finalized
    enters = ev[ev.probe == "sys_enter_ustack"]
    assert len(enters) > 5_000  # several journaled batches (~1 s at 20,000 calls/s, less
    # on a loaded machine: the bound is not a rate)
    assert enters.ustack_id.notna().all()  # no stack was lost...
    assert enters.ustack.map(lambda s: s is not None and len(s) > 0).all()  # ...and each reads
    ids = pc.unique(t.read(["ustack_id"]).column("ustack_id")).drop_null().to_pylist()
    assert set(ids) <= set(t.stacks)


def test_user_stacks_after_an_exec_are_the_new_images(known_calls, tmp_path):
    """A process that makes ioctls, then execs known_calls, which makes its own: the
    events after the exec resolve against the new image (BPF stack ids are addresses).
    Those just before it may not (BCC reads the new image's maps once the executable
    changed, and the batch is read after it): that is said in docs/trace-format.md."""
    out = tmp_path / "exec.iot"
    script = (
        "import fcntl, os, termios, array; r, w = os.pipe(); buf = array.array('i', [0])\n"
        "for _ in range(5): fcntl.ioctl(r, termios.FIONREAD, buf)\n"
        f"os.execv({known_calls!r}, ['known_calls', '0', '4'])"
    )
    proc = cli("record", "-o", str(out), "--ustack", "ioctl", "--", sys.executable, "-c", script)
    assert proc.returncode == 0, proc.stderr
    ev = load(str(out)).events
    fionread = ev[(ev.probe == "ioctl") & (ev["cmd"] == 0x541B)].sort_values("ts_ns")
    exec_at = ev.loc[ev.probe == "exec", "ts_ns"].max()
    before, after = fionread[fionread.ts_ns < exec_at], fionread[fionread.ts_ns > exec_at]
    assert len(before) == 5 and len(after) == 4 and fionread.pid.nunique() == 1
    # known_calls' main calls ioctl(); libc's ioctl keeps no frame, so main's caller follows
    assert all(list(s) == ["ioctl [libc.so.6]", "__libc_start_call_main [libc.so.6]"]
               for s in after.ustack)  # fmt: skip
