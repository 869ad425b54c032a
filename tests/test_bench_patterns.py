"""bench memcpy without a GPU: patterns, size parsing, the runner's loops and windows, sidecars."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from iommu_trace.bench import memcpy, patterns, results, sidecar
from iommu_trace.cli import cli


def test_patterns_shape():
    s = patterns.make("single")
    assert s.copies == 256 and set(s.host) == {0} and set(s.dev) == {0}
    q = patterns.make("sequential")
    assert q.host == q.dev == tuple(range(256))
    r = patterns.make("random-cpu")
    assert r.copies == 192 and len(set(r.host)) == 192 and r.dev == tuple(range(192))
    assert list(r.host) != sorted(r.host)
    a = patterns.make("random-all")
    assert sorted(a.host) == sorted(a.dev) == list(range(256))
    assert a.host != a.dev and list(a.dev) != sorted(a.dev)


def test_patterns_are_reproducible():
    # two runs (IOMMU on / off) must copy the same regions in the same order
    assert patterns.make("random-all") == patterns.make("random-all")
    assert patterns.make("random-cpu", regions=16).copies == 12
    with pytest.raises(ValueError, match="unknown pattern"):
        patterns.make("zigzag")


def test_parse_sizes_and_patterns():
    assert patterns.parse_sizes("6:24") == [1 << e for e in range(6, 25)]
    assert patterns.parse_sizes("6:24:2")[-1] == 1 << 24
    assert len(patterns.parse_sizes("6:24:2")) == 10
    assert patterns.parse_sizes("12,20") == [4096, 1 << 20]
    for bad in ("24:6", "6-24", "4096:8192"):
        with pytest.raises(ValueError):
            patterns.parse_sizes(bad)
    assert patterns.parse_patterns("all") == list(patterns.PATTERNS)
    assert patterns.parse_patterns("single,random-all") == ["single", "random-all"]


class FakeBackend:
    device, pci = "fake", "0000:00:06.0"

    def __init__(self):
        self.copies: list[tuple[int, int, int, str, str]] = []
        self.t = 0.0

    def host_alloc(self, nbytes, pinned):
        return 1 << 40 if pinned else 2 << 40

    def dev_alloc(self, nbytes):
        return 3 << 40

    def stream(self, mode):
        return mode

    def copy(self, dst, src, n, direction, mode, stream):
        assert stream == mode
        self.copies.append((dst, src, n, direction, mode))

    def start(self, stream):
        self.n0 = len(self.copies)

    def stop(self, stream):
        return 2.0 * (len(self.copies) - self.n0)  # 2 us a copy

    def release(self):
        pass


def test_runner_windows_and_addresses():
    cfg = memcpy.Config(
        sizes=[64, 4096],
        patterns=["random-cpu"],
        modes=["sync", "async"],
        memories=["pinned"],
        directions=["h2d", "d2h"],
        loops=3,
        warmup=1,
    )
    be = FakeBackend()
    cells = memcpy.run(cfg, be)
    assert len(cells) == 2 * 2 * 2
    assert len(be.copies) == len(cells) * 192 * 4  # warm-up + 3 timed loops
    p = patterns.make("random-cpu")
    first = be.copies[:192]  # h2d sync 64 B: dst on the device, src on the host
    assert [(d - (3 << 40)) // 64 for d, *_ in first] == list(p.dev)
    assert [(s - (1 << 40)) // 64 for _, s, *_ in first] == list(p.host)
    c = cells[0]
    assert c.t_start_ns < c.t_end_ns and c.loop_us == [384.0] * 3
    row = c.row("fake", "0000:00:06.0")
    assert row["median_us"] == 2.0 and row["gbps"] == 0.032 and row["loops"] == 3
    assert results.human_size(1 << 24) == "16 MiB" and results.human_size(64) == "64 B"
    assert cells[-1].direction == "d2h" and be.copies[-1][3] == "d2h"


def test_quantile_matches_numpy_default():
    assert results.quantile([1, 2, 3, 4], 0.25) == 1.75
    assert results.quantile([5], 0.75) == 5


def test_record_output_parsing():
    ro = sidecar.record_output
    assert ro(["python3", "-m", "iommu_trace.cli", "record", "-o", "b.iot", "--", "x"]) == "b.iot"
    assert ro(["/v/bin/iommu-trace", "record", "--output=c.iot", "--", "x"]) == "c.iot"
    assert ro(["/v/bin/iommu-trace", "record", "--", "x", "-o", "no"]) == "trace.iot"
    assert ro(["git", "record", "-o", "x"]) is None
    assert ro(["/v/bin/iommu-trace", "info", "x.iot"]) is None


def test_recording_trace_found_through_ancestors(tmp_path):
    # a fake recorder whose argv reads `... iommu-trace record -o t.iot -- CMD`; CMD's child asks
    ask = [
        sys.executable,
        "-c",
        "from iommu_trace.bench import sidecar; print(sidecar.recording_trace())",
    ]
    fake = [
        sys.executable,
        "-c",
        "import subprocess, sys; subprocess.run(sys.argv[6:], check=True)",
        "iommu-trace",
        "record",
        "-o",
        "t.iot",
        "--",
        "sh",
        "-c",
        '"$@"',
        "sh",
        *ask,
    ]
    out = subprocess.run(fake, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == os.path.join(str(tmp_path), "t.iot")
    assert sidecar.recording_trace() is None  # pytest runs under no recorder


def test_bench_without_cupy_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    r = CliRunner().invoke(cli, ["bench", "memcpy", "--sizes", "6:8"])
    assert r.exit_code == 2
    assert "needs CuPy" in r.output and "Traceback" not in r.output


def test_bench_rejects_bad_options():
    r = CliRunner().invoke(cli, ["bench", "memcpy", "--sizes", "24:6"])
    assert r.exit_code == 2 and "bad size range" in r.output
    r = CliRunner().invoke(cli, ["bench", "memcpy", "--modes", "fast"])
    assert r.exit_code == 2


def test_results_csv_round_trip(tmp_path):
    c = results.Cell("single", 64, "sync", "pinned", "h2d", 256, [512.0, 768.0], 1, 2)
    path = tmp_path / "r.csv"
    results.write_csv(str(path), [c.row()])
    rows = list(csv.DictReader(open(path)))
    assert rows[0]["median_us"] == "2.5" and rows[0]["t_end_ns"] == "2"
    assert "single" in results.table([c.row()])


def test_results_json_goes_into_the_trace_metadata(tmp_path):
    from iommu_trace.analysis import overhead_data as od
    from iommu_trace.tracefile.meta import TraceMeta

    c = results.Cell("single", 64, "sync", "pinned", "h2d", 256, [512.0, 768.0], 10, 20)
    path = tmp_path / "r.json"
    results.write(str(path), [c.row("gpu", "0000:00:06.0")])
    doc = json.loads(path.read_text())
    # what `record --workload-result r.json` stores as the trace's `workload`
    meta = TraceMeta.from_json({"workload": doc, "iommu": {"mode": "strict"}})
    res = od.find_results(str(tmp_path / "t.iot"), meta)
    assert res.kind == "memcpy" and res.dev == "0000:00:06.0" and res.label == "strict"
    row = res.cells.iloc[0]
    assert row["ops"] == 512 and row["lat_us"] == 2.5 and row["t_end_ns"] == 20
