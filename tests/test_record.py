"""The recorder on this machine's real kernel: real tracepoints, real uprobes, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from iommu_trace.tracefile.reader import load

from conftest import cli, one_line_error, requires_bpf

pytestmark = requires_bpf

FIONREAD = 0x541B


def record(out, *args, cmd=(), **kw):
    return cli("record", "-o", str(out), *args, "--", *cmd, **kw)


def probe_meta(trace, name):
    return next(p for p in trace.meta["probes"] if p["name"] == name)


@pytest.fixture(scope="module")
def exact_run(known_calls, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "exact.iot"
    proc = record(
        out,
        "--uprobe",
        f"{known_calls}:iot_work:size=arg1",
        "--uprobe",
        "c:no_such_function_xyz",
        cmd=(known_calls, "25", "7", "3"),
    )
    return proc, out


def test_exact_counts_sizes_and_exit_status(exact_run):
    proc, out = exact_run
    assert proc.returncode == 3, proc.stderr  # the command's own exit status
    t = load(str(out))
    assert t.finalized and t.meta["exit_status"] == 3
    ev = t.events
    work = ev[ev.probe == "iot_work"]
    assert t.meta["counts"]["iot_work"] == 25
    assert len(work) == 25
    assert sorted(work["size"].tolist()) == [i * 4096 for i in range(1, 26)]
    assert sorted(work["ret"].tolist()) == list(range(1, 26))  # size / 4096
    assert (work["dur_ns"] > 0).all()
    assert set(work["comm"]) == {"known_calls"}
    assert t.meta["drops"]["iot_work"] == 0


def test_user_stacks_are_symbolized(exact_run):
    _, out = exact_run
    ev = load(str(out)).events
    for stack in ev[ev.probe == "iot_work"]["ustack"]:
        frames = list(stack)
        assert frames[0] == "iot_work [known_calls]", frames
        # At a function's first instruction the frame-pointer walk skips the
        # direct caller (iot_outer); main is the next frame it finds.
        assert "main [known_calls]" in frames, frames


def test_syscall_probe_counts_exactly(exact_run):
    _, out = exact_run
    ev = load(str(out)).events
    child = ev[(ev.probe == "iot_work")]["pid"].iloc[0]
    fionread = ev[(ev.probe == "ioctl") & (ev.pid == child) & (ev["cmd"] == FIONREAD)]
    assert len(fionread) == 7
    assert (fionread["ret"] == 0).all()
    assert (fionread["dur_ns"] >= 0).all()
    # ioctl takes no user stack unless asked (record --ustack ioctl): a CUDA workload
    # makes thousands a second (docs/benchmarks.md)
    assert fionread["ustack_id"].isna().all()


def test_missing_probes_are_named_with_reason(exact_run):
    proc, out = exact_run
    t = load(str(out))
    missing = probe_meta(t, "no_such_function_xyz")
    assert missing["status"] == "absent"
    assert "not exported" in missing["reason"]
    for p in t.meta["probes"]:
        assert p["status"] in ("attach", "absent", "disabled", "failed")
        if p["status"] != "attach":
            assert p["reason"], p
    if not os.path.exists("/sys/kernel/tracing/kprobe_events"):
        assert "no kprobes" in probe_meta(t, "iotlb_sync")["reason"]
    assert "not attached" in proc.stderr  # said at record time too


def test_trace_is_readable_without_our_code(exact_run):
    _, out = exact_run
    df = pd.read_parquet(out)
    assert (df.probe == "iot_work").sum() == 25
    n = duckdb.execute(
        f"select count(*) from read_parquet('{out}') where probe = 'iot_work'"
    ).fetchone()
    assert n == (25,)
    kv = duckdb.execute(
        f"select value from parquet_kv_metadata('{out}') where key = 'iommu_trace'"
    ).fetchone()[0]
    assert b'"version": 2' in kv
    assert b'"format": "iommu-trace"' in kv
    # The documented join (docs/trace-format.md) gives each event its frames.
    joined = duckdb.execute(
        f"""select s.frames from read_parquet('{out}') e
            join read_parquet('{out}') s on s.record = 'stack' and s.stack_id = e.ustack_id
            where e.record = 'event' and e.probe = 'iot_work' order by e.ts_ns"""
    ).fetchall()
    ours = load(str(out)).events
    assert [list(r[0]) for r in joined] == [
        list(x) for x in ours[ours.probe == "iot_work"]["ustack"]
    ]
    assert len(joined) == 25 and all(any("work" in f for f in r[0]) for r in joined)


def test_info_shows_counts(exact_run):
    _, out = exact_run
    proc = cli("info", str(out))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("iot_work"))
    assert " 25 " in line
    assert "exit       3" in proc.stdout


def test_perf_buffer_gives_the_same_counts(known_calls, tmp_path):
    out = tmp_path / "perf.iot"
    proc = record(
        out, "--perf-buffer", "--uprobe", f"{known_calls}:iot_work", cmd=(known_calls, "40")
    )
    assert proc.returncode == 0, proc.stderr
    t = load(str(out))
    assert t.meta["buffer"] == "perf"
    assert t.meta["counts"]["iot_work"] == 40
    assert (t.events.probe == "iot_work").sum() == 40


def test_follow_pid_and_the_children_it_had_already(known_calls, tmp_path):
    # a shell whose child calls every 10 ms for longer than a loaded machine's recorder
    # start-up: the child was forked before `record -p` attached (DataLoader's workers)
    target = subprocess.Popen(["sh", "-c", f"{known_calls} 1 0 sleep:60; true"])
    try:
        deadline = time.monotonic() + 10
        kids: list[int] = []
        while not kids and time.monotonic() < deadline:
            time.sleep(0.05)
            kids = [int(x) for x in Path(f"/proc/{target.pid}/task/{target.pid}/children")
                    .read_text().split()]  # fmt: skip
        assert kids, "the shell forked no child"
        out = tmp_path / "pid.iot"
        proc = cli(
            "record",
            "-o",
            str(out),
            "-p",
            str(target.pid),
            "-d",
            "1.5",
            "--uprobe",
            f"{known_calls}:iot_work",
        )
        assert proc.returncode == 0, proc.stderr
        assert "and its 1 running descendants" in proc.stderr
        t = load(str(out))
        work = t.events[t.events.probe == "iot_work"]
        assert len(work) > 10  # one call every 10 ms
        assert set(work["pid"]) == set(kids)
        c = t.meta["cost"]  # what `info` says the recording cost, measured for -p too
        assert c["startup_s"] > 0 and c["recorder_cpu_running"] is not None
        assert set(c["workload_cpu"]) == {"user_s", "sys_s"}  # the shell's own: it waits
    finally:
        target.kill()
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        target.wait()


def test_children_of_the_command_are_followed(known_calls, tmp_path):
    out = tmp_path / "child.iot"
    shell = f"{known_calls} 3 0; {known_calls} 2 0; true"  # sh forks each: two children
    proc = record(out, "--uprobe", f"{known_calls}:iot_work", cmd=("sh", "-c", shell))
    assert proc.returncode == 0, proc.stderr
    t = load(str(out))
    assert t.meta["counts"]["iot_work"] == 5
    work = t.events[t.events.probe == "iot_work"]
    assert len(work) == 5 and work.pid.nunique() == 2


def test_command_crash_is_recorded(known_calls, tmp_path):
    out = tmp_path / "crash.iot"
    proc = record(out, "--uprobe", f"{known_calls}:iot_work", cmd=(known_calls, "3", "0", "crash"))
    assert proc.returncode == 128 + signal.SIGSEGV
    t = load(str(out))
    assert t.finalized
    assert t.meta["exit_status"] == -signal.SIGSEGV
    assert t.meta["counts"]["iot_work"] == 3


def test_command_not_found(tmp_path):
    out = tmp_path / "nf.iot"
    line = one_line_error(record(out, cmd=("no-such-command-xyz",)))
    assert "command not found: no-such-command-xyz" in line
    assert not out.exists()


def test_not_root_gets_one_line(tmp_path):
    os.chmod(tmp_path, 0o777)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "iommu_trace.cli",
            "record",
            "-o",
            str(tmp_path / "x.iot"),
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "needs root" in one_line_error(proc)


def test_runs_command_as_invoking_user(tmp_path):
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp is private to root
    shared.chmod(0o777)
    sudo = {"SUDO_UID": "65534", "SUDO_GID": "65534"}
    for extra, want in (((), "65534"), (("--as-root",), "0")):
        f = shared / f"uid{len(extra)}"
        proc = cli(
            "record",
            "-o",
            str(tmp_path / "u.iot"),
            *extra,
            "--",
            "sh",
            "-c",
            f"id -u > {f}",
            env=sudo,
        )
        assert proc.returncode == 0, proc.stderr
        assert f.read_text().strip() == want


def _wait_for_events(path, timeout=20.0):
    """Until the journal holds at least one flushed batch of events."""
    from iommu_trace.tracefile import journal

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if path.exists() and journal.read(path.read_bytes()).batches:
                return
        except journal.JournalError:  # the header is not written yet
            pass
        time.sleep(0.2)
    raise AssertionError("no events were flushed")


def _spawn_record(known_calls, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iommu_trace.cli",
            "record",
            "-o",
            str(out),
            "--uprobe",
            f"{known_calls}:iot_work",
            "--",
            known_calls,
            "1",
            "0",
            "sleep:30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_finalizes_and_returns_command_status(known_calls, tmp_path):
    out = tmp_path / "int.iot"
    rec = _spawn_record(known_calls, out)
    _wait_for_events(out)
    rec.send_signal(signal.SIGINT)
    _, err = rec.communicate(timeout=30)
    assert rec.returncode == 128 + signal.SIGINT, err
    t = load(str(out))
    assert t.finalized
    assert t.meta["stop_signal"] == signal.SIGINT
    n = t.meta["counts"]["iot_work"]
    assert n > 10 and (t.events.probe == "iot_work").sum() == n


def test_sigterm_finalizes(known_calls, tmp_path):
    out = tmp_path / "term.iot"
    rec = _spawn_record(known_calls, out)
    _wait_for_events(out)
    rec.send_signal(signal.SIGTERM)
    rec.communicate(timeout=30)
    assert rec.returncode == 128 + signal.SIGTERM
    assert load(str(out)).finalized


def test_sigkill_leaves_a_readable_partial_trace(known_calls, tmp_path):
    out = tmp_path / "kill.iot"
    rec = _spawn_record(known_calls, out)
    _wait_for_events(out)
    time.sleep(1.0)
    rec.kill()
    # wait, not communicate: the orphaned workload still holds the pipes open (it sleeps
    # 30 s), so reading them to EOF would wait for it, not for the recorder
    rec.wait(timeout=30)
    for pipe in (rec.stdout, rec.stderr):
        if pipe is not None:
            pipe.close()
    t = load(str(out))
    ev = t.events
    for pid in set(ev["pid"]):  # the orphaned workload
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not t.finalized
    assert (ev.probe == "iot_work").sum() > 10
    assert t.meta["command"][0] == known_calls
    info = cli("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "NOT finalized" in info.stdout
    assert "not finalized" in info.stderr


# ---------------------------------------------------------------- damaged trace files


@pytest.fixture(scope="module")
def good_trace(exact_run):
    return exact_run[1]


def test_truncated_trace(good_trace, tmp_path):
    data = good_trace.read_bytes()
    bad = tmp_path / "trunc.iot"
    bad.write_bytes(data[: len(data) // 2])
    assert "truncated" in one_line_error(cli("info", str(bad)))


def test_corrupt_trace(good_trace, tmp_path):
    data = bytearray(good_trace.read_bytes())
    for i in range(8, len(data) - 8):
        data[i] = 0xAB
    bad = tmp_path / "corrupt.iot"
    bad.write_bytes(bytes(data))
    assert "corrupt" in one_line_error(cli("info", str(bad)))


def test_future_version_trace(good_trace, tmp_path):
    table = pq.read_table(good_trace)
    meta = dict(table.schema.metadata)
    meta[b"iommu_trace"] = meta[b"iommu_trace"].replace(b'"version": 2', b'"version": 99')
    bad = tmp_path / "future.iot"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    assert "newer" in one_line_error(cli("info", str(bad)))


@pytest.mark.parametrize(
    "content, words",
    [(b"a,b\n1,2\n", "not an iommu-trace file"), (b"", "empty file")],
)
def test_foreign_or_empty_file(tmp_path, content, words):
    bad = tmp_path / "foreign.iot"
    bad.write_bytes(content)
    assert words in one_line_error(cli("info", str(bad)))


def test_foreign_parquet(tmp_path):
    bad = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(bad)
    assert "not an iommu-trace file" in one_line_error(cli("info", str(bad)))


def test_missing_file(tmp_path):
    assert "no such file" in one_line_error(cli("info", str(tmp_path / "nope.iot")))


def test_a_catalog_that_cannot_compile_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[probe]]\nname = "forks"\ngroup = "process"\nop = "fork"\n'
        '[[probe.target]]\ntracepoint = "sched:sched_process_fork"\n'
        'fields = { count = "parent_comm" }\n'  # a string field read as a number
    )
    line = one_line_error(record(tmp_path / "x.iot", "--catalog", str(bad), cmd=("true",)))
    assert "probe catalog: field parent_comm is a string" in line
    assert not (tmp_path / "x.iot").exists()


def test_output_directory_missing_is_one_line(tmp_path):
    line = one_line_error(record(tmp_path / "no" / "such" / "x.iot", cmd=("true",)))
    assert "cannot write" in line and "no directory" in line


def test_a_library_loaded_later_is_symbolized(tmp_path):
    """The process's symbols were cached before it dlopen'ed the library its later
    stacks go through: a newer cache is layered on, and names that frame."""
    here = Path(__file__).parent / "workloads"
    lib, exe = tmp_path / "liblate.so", tmp_path / "late_loader"
    flags = ["-O1", "-g", "-fno-omit-frame-pointer"]
    subprocess.run(
        ["gcc", *flags, "-shared", "-fPIC", "-o", lib, here / "late_library.c"], check=True
    )
    subprocess.run(["gcc", *flags, "-o", exe, here / "late_loader.c", "-ldl"], check=True)
    out = tmp_path / "late.iot"
    proc = record(
        out, "--no-probe", "cuda-driver,cuda-runtime", "--ustack", "ioctl", cmd=(str(exe), str(lib))
    )
    assert proc.returncode == 0, proc.stderr
    t = load(str(out))
    ev = t.events
    mine = ev[(ev.probe == "ioctl") & (ev.comm == "late_loader") & (ev["cmd"] == FIONREAD)]
    assert len(mine) == 4
    late = [list(s) for s in mine.ustack if any("late_ioctl" in f for f in s)]
    assert len(late) == 3, list(mine.ustack)
    assert all("late_ioctl [liblate.so]" in s for s in late)
    assert t.meta["cost"]["symbol_refreshes"] >= 1


def test_the_trace_says_what_recording_cost(exact_run):
    _, out = exact_run
    c = load(str(out)).meta["cost"]
    assert 0 < c["compile_s"] < c["startup_s"] < 120
    assert c["workload_cpu"]["user_s"] + c["workload_cpu"]["sys_s"] > 0
    rec, running = c["recorder_cpu"], c["recorder_cpu_running"]
    assert 0 <= running["user_s"] <= rec["user_s"] and rec["user_s"] > 0
    assert c["callback_s"] >= 0
    proc = cli("info", str(out))
    assert "cost       start-up " in proc.stdout and "recorder CPU" in proc.stdout


# ---------------------------------------------------------------- bad numbers, owners, addresses


@pytest.mark.parametrize(
    "args, words",
    [
        (("-d", "-1"), "-d/--duration must be a number of seconds > 0, not -1"),
        (("-d", "0"), "-d/--duration must be a number of seconds > 0, not 0"),
        (("--buffer-pages", "0"), "--buffer-pages 0: must be a power of two"),
        (("--buffer-pages", "-1"), "--buffer-pages -1: must be a power of two"),
        (("--buffer-pages", "3"), "--buffer-pages 3: must be a power of two"),
        (("--buffer-pages", str(10**9)), f"--buffer-pages {10**9}: must be a power of two"),
        (("--buffer-pages", str(1 << 30)), "a BPF ring buffer holds at most 524288 pages"),
        (("--stack-entries", "0"), "--stack-entries 0: must be 1 or more"),
        (("--stack-entries", str(1 << 40)), "more than half of this machine's available memory"),
        (("--ustack", "ioctl,nosuch"), "unknown probe or group: nosuch"),
    ],
)
def test_bad_numbers_are_one_line(tmp_path, args, words):
    proc = cli("record", "-o", str(tmp_path / "x.iot"), *args, "--", "true")
    assert words in one_line_error(proc)
    assert not (tmp_path / "x.iot").exists()


def test_files_belong_to_the_sudo_user():
    """Under sudo the trace (journal, then Parquet) is the invoking user's, not root's."""
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # root-owned 0700: only root may create here
    out = shared / "owned.iot"
    sudo = {"SUDO_UID": "65534", "SUDO_GID": "65534"}
    proc = record(out, "--uprobe", "c:malloc", cmd=("sh", "-c", "ls / >/dev/null"), env=sudo)
    assert proc.returncode == 0, proc.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert load(str(out)).finalized
    assert not list(shared.glob("*.partial"))


def test_fresh_recording_holds_no_raw_address(tmp_path):
    """malloc's return values are user pointers: pseudonymized unless --keep-addresses."""
    from iommu_trace.tracer.addresses import raw_address_columns, raw_addresses_in

    traces = {}
    for extra in ((), ("--keep-addresses",)):
        out = tmp_path / f"m{len(extra)}.iot"
        proc = record(out, "--uprobe", "c:malloc", *extra, cmd=("sh", "-c", "ls / >/dev/null"))
        assert proc.returncode == 0, proc.stderr
        traces[extra] = t = load(str(out))
        rets = t.events.loc[t.events.probe == "malloc", "ret"].dropna()
        assert (rets.abs() >= 1 << 16).sum() > 5  # pointers were recorded
    t = traces[()]
    assert raw_address_columns(t.table, t.meta) == []
    assert raw_addresses_in(t.meta) == []
    raw = traces[("--keep-addresses",)]
    assert raw_address_columns(raw.table, raw.meta) == ["addr"]  # the check sees raw pointers
