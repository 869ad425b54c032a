"""`record --count` on this machine's kernel: events counted in BPF maps, real events.

A loop of getppid() (recorder_cost/loop.c wait-getppid) that waits for a byte on
stdin, followed with -p before the byte is sent, makes a known set of system
calls: N getppid and the few of its exit (printf's write, usleep's nanosleep,
exit_group), the same in every run. (A command started by `record` also
counts what its forked launcher does before the exec, which races the
recorder; -p sees none of that.) An event recording of the same protocol
names those few, by number, and the benchmark catalog's sys_enter takes the
number as its size too; a counting recording of N calls must then hold exactly
N getppid entries plus those few, in the size buckets and byte sums their
numbers give.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from fuzz_traces import as_counting, bucket

from iommu_trace.analysis import report
from iommu_trace.tracefile.reader import load

from conftest import HERE, RATE_CATALOG, SYS_GETPPID, TRACES, cli, one_line_error, requires_bpf

N, RATE = 200_000, 100_000  # two seconds of calls: count rows of several seconds
getppid = pytest.mark.skipif(SYS_GETPPID is None, reason="getppid's number on this architecture")


def record_gated(loop: str, out: Path, n: int, *args: str, rate: int | None = None) -> str:
    """Record the waiting loop with -p, release it once followed; the recorder's stderr."""
    target = subprocess.Popen(
        [loop, "wait-getppid", str(n), *([str(rate)] if rate else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    rec = subprocess.Popen(
        [sys.executable, "-m", "iommu_trace.cli", "record", "--catalog", RATE_CATALOG,
         "--probe", "sys_enter,sys_exit", "-p", str(target.pid), "-o", str(out), *args],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert rec.stderr is not None and target.stdin is not None
    try:
        said = []
        for line in rec.stderr:  # the recorder says when the pid is in its followed map
            said.append(line)
            if "following pid" in line:
                break
        else:
            pytest.fail(f"the recorder never followed the loop:\n{''.join(said)}")
        target.stdin.write(b"x")
        target.stdin.close()
        assert target.wait(timeout=60) == 0
        said.append(rec.stderr.read())  # it ends once the loop is gone (reaped above)
        assert rec.wait(timeout=60) == 0, "".join(said)
    finally:
        for p in (target, rec):
            if p.poll() is None:
                p.kill()
                p.wait()
    return "".join(said)


@pytest.fixture(scope="module")
def reference(loop, tmp_path_factory) -> dict:
    """The protocol's system calls besides getppid, from an event recording of it."""
    out = tmp_path_factory.mktemp("ref") / "ref.iot"
    record_gated(loop, out, 2000)
    t = load(str(out))
    enters = t.events[t.events.probe == "sys_enter"]
    ppid = enters["cmd"] == SYS_GETPPID
    assert ppid.sum() == 2000 and (enters["size"] == enters["cmd"]).all()
    others = [int(x) for x in enters.loc[~ppid, "cmd"]]
    # the exit's few (write, nanosleep, exit_group here): nothing of the start-up
    assert 0 < len(others) < 10, others
    return {"path": out, "enter": others, "exit": t.meta["counts"]["sys_exit"] - 2000}


@pytest.fixture(scope="module")
def counted(loop, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("count") / "count.iot"
    return out, record_gated(loop, out, N, "--count", rate=RATE)


@requires_bpf
@getppid
def test_counts_are_exact(reference, counted):
    out, said = counted
    t = load(str(out))
    assert t.counting and t.meta["buffer"] == "none" and t.num_events == 0
    rows = t.count_frame()
    enter, exit_ = rows[rows.probe == "sys_enter"], rows[rows.probe == "sys_exit"]
    # exactly the N calls and the exit's few, each system call entry once
    assert int(enter["count"].sum()) == N + len(reference["enter"])
    assert int(exit_["count"].sum()) == N + reference["exit"]
    # per size bucket (the call's number): counts and byte sums as the numbers give
    want: Counter = Counter()
    want_bytes: Counter = Counter()
    for nr in [SYS_GETPPID] * N + reference["enter"]:
        want[bucket(nr)] += 1
        want_bytes[bucket(nr)] += nr
    by = enter.groupby("size_bucket")[["count", "bytes"]].sum()
    assert {int(k): int(v) for k, v in by["count"].items()} == dict(want)
    assert {int(k): int(v) for k, v in by["bytes"].items()} == dict(want_bytes)
    assert exit_["size_bucket"].isna().all() and exit_["bytes"].isna().all()  # no size
    assert rows["dev"].isna().all()  # no probe here has a device
    # the kernel's per-probe counters: every event is in one row
    assert t.meta["counts"] == {"sys_enter": int(enter["count"].sum()),
                                "sys_exit": int(exit_["count"].sum())}  # fmt: skip
    assert t.meta["count"]["map_full"] == {} and t.meta["count"]["map_errors"] == {}
    # the rows of each second sum to the totals, over the seconds the calls took
    per_s = enter.groupby("second")["count"].sum()
    assert int(per_s.sum()) == t.meta["counts"]["sys_enter"]
    span_s = (t.metadata.end_mono_ns - t.metadata.counting.origin_mono_ns) / 1e9
    assert len(per_s) >= 2 and 0 <= per_s.index.min() and per_s.index.max() < span_s
    assert f"{N + len(reference['enter']) + N + reference['exit']} events counted" in said


@requires_bpf
@getppid
def test_info_and_report_show_the_counts(counted):
    out, _said = counted
    t = load(str(out))
    total = t.meta["counts"]["sys_enter"]
    info = cli("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "trace of counts (record --count)" in info.stdout
    row = next(line.split() for line in info.stdout.splitlines() if line.startswith("sys_enter"))
    assert row[3:5] == [str(total), str(total)]  # COUNT, IN ROWS
    doc = json.loads(cli("info", str(out), "--format", "json").stdout)
    assert doc["counting"]["counted"] == sum(t.meta["counts"].values())
    rep = json.loads(cli("report", str(out), "--format", "json").stdout)
    probes = {p["probe"]: p for p in rep["probes"]}
    assert probes["sys_enter"]["count"] == total
    assert sum(b["counts"]["sys_enter"] for b in rep["probe_timeline"]) == total
    assert probes["sys_enter"]["per_second"] == pytest.approx(total / rep["duration_s"])
    text = cli("report", str(out))
    assert text.returncode == 0 and f"{total:,}" in text.stdout
    assert "counting trace (record --count" in text.stdout


@requires_bpf
@getppid
def test_documented_query_reads_the_count_rows(counted):
    """docs/trace-format.md's DuckDB query, without our code: the same counts."""
    out, _said = counted
    doc = (HERE.parent / "docs" / "trace-format.md").read_text()
    sql = next(b for b in re.findall(r"```sql\n(.*?)```", doc, re.S) if "counting trace" in b)
    got = duckdb.sql(sql.replace("run.iot", str(out))).df()
    t = load(str(out))
    assert got.groupby("probe")["events"].sum().astype(int).to_dict() == t.meta["counts"]
    per_s = t.count_frame().groupby(["probe", "second"])["count"].sum()  # over size buckets
    assert {(p, int(s)): int(n) for p, s, n in zip(got.probe, got.second, got.events,
                                                  strict=True)} == {
        (p, int(s)): int(n) for (p, s), n in per_s.items()
    }  # fmt: skip


@requires_bpf
@getppid
def test_per_event_reports_say_why_they_cannot_run(reference, counted):
    out, _said = counted
    for verb in (["calls"], ["callgraph"], ["export", "--perfetto", str(out) + ".json"]):
        line = one_line_error(cli(*verb, str(out)))
        assert "is a counting trace (record --count)" in line and "no events" in line
    cmp = cli("compare", str(reference["path"]), str(out))
    assert cmp.returncode == 0, cmp.stderr
    assert "counting traces (record --count)" in cmp.stdout


@requires_bpf
def test_a_full_map_is_counted_and_said(loop, tmp_path):
    """One key for two probes: every key after the first is refused, counted, said."""
    out = tmp_path / "full.iot"
    proc = cli("record", "--catalog", RATE_CATALOG, "--probe", "sys_enter,sys_exit", "--count",
               "--count-entries", "1", "-o", str(out), "--", loop, "getppid", "20000")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    t = load(str(out))
    full = t.meta["count"]["map_full"]
    assert sum(full.values()) >= 20_000 and t.meta["count"]["map_keys"] == 1
    rows = t.count_frame()
    for probe, n in t.meta["counts"].items():  # the counter: what the rows hold, and the refused
        assert n == int(rows.loc[rows.probe == probe, "count"].sum()) + full.get(probe, 0)
    assert "NOT in the count rows: the count map (1 keys) was full" in proc.stderr
    assert "raise --count-entries" in proc.stderr
    info = cli("info", str(out))
    assert "events NOT in the rows" in info.stdout


def test_count_options_need_count_and_event_options_do_not_apply():
    line = one_line_error(cli("record", "--count", "--buffer-pages", "64", "-a", "-d", "1"))
    assert "--buffer-pages does not apply" in line
    line = one_line_error(cli("record", "--count-entries", "64", "-a", "-d", "1"))
    assert "give --count too" in line


def test_report_from_count_rows_is_report_from_the_events(tmp_path):
    """The lab's strict dd run (real VT-d maps, unmaps, flushes), as events and summed into
    count rows: report and compare give the same counts, rates, devices and sizes."""
    src = str(TRACES / "lab" / "dd64k-strict.iot")
    out = tmp_path / "counted.iot"
    as_counting(src, out)
    events, counts = report.build(load(src)), report.build(load(str(out)))
    assert counts["counting"] and not events.get("counting")
    assert sum(v or 0 for v in events["counts"].values()) > 1000
    for key in ("counts", "rates_per_s", "flushes_per_unmap", "devices", "size_histogram",
                "duration_s"):  # fmt: skip
        assert counts[key] == events[key], key
    assert sum(sum(b[k] for k in ("dma_map", "flush")) for b in counts["timeline"]) == (
        events["counts"]["dma_map"] + events["counts"]["flush"]
    )
    cmp = cli("compare", src, str(out), "--format", "json")
    a, b = json.loads(cmp.stdout)["traces"]
    assert a["counts"] == b["counts"] and b["counting"] and b["map_latency_us"] is None


@requires_bpf
def test_sigterm_writes_the_counts(loop, tmp_path):
    """Stopped by SIGTERM mid-loop, like a normal recording: the counts of what ran."""
    out = tmp_path / "term.iot"
    rec = subprocess.Popen(
        [sys.executable, "-m", "iommu_trace.cli", "record", "--catalog", RATE_CATALOG,
         "--probe", "sys_enter,sys_exit", "--count", "-o", str(out), "--",
         loop, "getppid", "100000000", "50000"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert rec.stderr is not None
    for line in rec.stderr:
        if "writing" in line:
            break
    time.sleep(1.0)  # the loop runs
    rec.send_signal(signal.SIGTERM)
    said = rec.stderr.read()
    assert rec.wait(timeout=60) == 128 + signal.SIGTERM, said  # the loop's status: killed
    t = load(str(out))
    assert t.finalized and t.counting and t.meta["stop_signal"] == signal.SIGTERM
    rows = t.count_frame()
    per = rows.groupby("probe")["count"].sum().astype(int).to_dict()
    assert per == t.meta["counts"] and per["sys_enter"] > 10_000
    info = cli("info", str(out))
    assert "trace of counts" in info.stdout and "stopped by signal 15" in info.stdout


@requires_bpf
def test_system_wide_counts_are_read_at_rest(tmp_path):
    """Every system call on the machine, the recorder's own reads of the map among them:
    the counters and the rows still agree, because counting stops before they are read."""
    out = tmp_path / "all.iot"
    proc = cli("record", "--catalog", RATE_CATALOG, "--probe", "sys_enter,sys_exit", "--count",
               "-a", "-d", "1.5", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    t = load(str(out))
    per = t.count_frame().groupby("probe")["count"].sum().astype(int).to_dict()
    assert per == t.meta["counts"] and per["sys_enter"] > 20
