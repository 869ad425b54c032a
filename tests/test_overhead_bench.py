"""`overhead` on the committed H100 bench traces (IOMMU off, recorded twice), and its fit."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from iommu_trace.analysis import overhead_data as od
from iommu_trace.analysis import overhead_fit as oc
from iommu_trace.cli import cli
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"
A = str(TRACES / "bench" / "bench-a.iot")
B = str(TRACES / "bench" / "bench-b.iot")
F = str(TRACES / "flexgen" / "flexgen.iot")


def cells(path: str):
    t = load(path)
    res = od.find_results(path, t.metadata)
    return t, res, od.count_events(t.events, t.metadata, res)


def pick(c: pd.DataFrame, pattern, size, mode, memory, direction) -> pd.Series:
    sel = (c["pattern"] == pattern) & (c["size"] == size) & (c["mode"] == mode)
    sel &= (c["memory"] == memory) & (c["direction"] == direction)
    assert sel.sum() == 1
    return c[sel].iloc[0]


def test_results_found_beside_the_trace():
    t, res, c = cells(A)
    assert res.kind == "memcpy" and res.source == A + ".bench.csv"
    assert res.dev == "0000:00:06.0" and res.label == "off"
    assert len(c) == 160  # 10 sizes x 2 patterns x sync/async x pinned/pageable x h2d/d2h
    assert set(c["ops"]) == {1536}  # 256 copies x 6 loops


def test_exact_figures_of_the_h100_trace():
    _, _, c = cells(A)
    big = pick(c, "single", 1 << 24, "sync", "pinned", "h2d")
    assert big["lat_us"] == 316.219 and big["gbps"] == 53.0557
    assert pick(c, "random-all", 64, "async", "pinned", "h2d")["lat_us"] == 2.4171
    # no copy, pinned or pageable, mapped, unmapped or IOMMU-mapped anything
    for cat in ("dma_map", "dma_unmap", "iommu_map", "iommu_unmap"):
        assert (c["N_" + cat] == 0).all() and (c[cat] == 0).all()
    # no kprobes on that kernel: flushes and IOVA allocations are unknown, not zero
    assert c["flush"].isna().all() and c["iova_alloc"].isna().all()


def test_events_outside_the_windows():
    t, res, _ = cells(A)
    assert od.outside_windows(t.events, t.metadata, res) == {
        "dma_map": (570, 0),
        "dma_unmap": (569, 0),
        "iommu_map": (0, 0),
        "iommu_unmap": (0, 0),
    }


def test_identical_counts_are_stated_plainly():
    _, ra, ca = cells(A)
    _, rb, cb = cells(B)
    cmp = oc.compare(ca, cb, "bench-a", "bench-b", (ra.label, rb.label))
    assert cmp.differing == [] and cmp.fit is None
    assert cmp.recordable == ["dma_map", "dma_unmap", "iommu_map", "iommu_unmap"]
    assert round(cmp.cells["overhead_pct"].median(), 1) == 1.1
    assert round(cmp.cells["overhead_pct"].max(), 1) == 55.8  # single 4 KiB async pinned d2h
    s = cmp.statement
    assert s.startswith("The counts do not differ: no timed operation")
    assert "does not come from mapping, unmapping or flushing" in s
    assert "Both ran with the IOMMU off: it is run-to-run variation." in s
    assert "Not recordable in both traces (probe absent): IOTLB flushes, IOVA allocations." in s


def test_translation_named_when_modes_differ():
    _, _, ca = cells(A)
    cmp = oc.compare(ca, ca, "off", "strict", ("off", "strict"))
    assert "must come from address translation" in cmp.statement


def test_fit_recovers_a_known_cost():
    dn = np.array([1.0, 1.0, 0.5, 2.0])
    dt = 3.0 * dn
    c, err = oc.fit_cost(dn, dt, np.full(4, np.nan))
    assert c == pytest.approx(3.0) and err == pytest.approx(0, abs=1e-12)
    c, err = oc.fit_cost(np.array([2.0]), np.array([5.0]), np.array([0.4]))
    assert c == 2.5 and err == pytest.approx(0.2)
    c, err = oc.fit_cost(np.array([1.0]), np.array([5.0]), np.array([np.nan]))
    assert c == 5 and math.isnan(err)


def test_differing_counts_are_fitted():
    _, _, base = cells(A)
    other = base.copy()
    other["dma_unmap"] = 1.0  # one more unmap per copy, costing 2 us each
    other["lat_us"] = base["lat_us"] + 2.0
    cmp = oc.compare(base, other, "off", "strict", ("off", "strict"))
    assert cmp.differing == ["dma_unmap"]
    assert cmp.fit.category == "dma_unmap" and cmp.fit.cost_us == pytest.approx(2.0)
    assert cmp.fit.cells == 160
    assert "cost per DMA unmap: 2 +- " in cmp.statement
    assert cmp.cells["cost_us"].round(6).eq(2.0).all()


def test_cli_one_trace_and_two():
    r = CliRunner().invoke(cli, ["overhead", A])
    assert r.exit_code == 0, r.output
    inside = "Inside the timed windows: 0 of 570 DMA maps, 0 of 569 DMA unmaps; the rest happened"
    assert inside in r.output
    assert "IOMMU off" in r.output and "316.22" in r.output
    r = CliRunner().invoke(cli, ["overhead", A, B])
    assert r.exit_code == 0 and "The counts do not differ" in r.output
    doc = json.loads(CliRunner().invoke(cli, ["overhead", A, B, "--format", "json"]).output)
    assert doc["comparisons"][0]["differing"] == [] and len(doc["traces"]) == 2


def test_cli_plot_and_results_option(tmp_path):
    svg = tmp_path / "arch.svg"
    r = CliRunner().invoke(cli, ["overhead", A, B, "-o", str(svg)])
    assert r.exit_code == 0, r.output
    assert svg.read_text().lstrip().startswith("<?xml")
    # results named explicitly, for a trace copied away from its sidecar
    t = tmp_path / "x.iot"
    shutil.copy(A, t)
    r = CliRunner().invoke(cli, ["overhead", str(t)])
    assert r.exit_code == 2 and "no benchmark results beside it" in r.output
    r = CliRunner().invoke(cli, ["overhead", str(t), "--results", A + ".bench.csv"])
    assert r.exit_code == 0 and "0 of 570 DMA maps" in r.output


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["overhead", A, "-o", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and ".svg, .png or .pdf" in r.output
    r = CliRunner().invoke(cli, ["overhead", A, B, "--results", A + ".bench.csv"])
    assert r.exit_code == 2 and "one --results per trace" in r.output
    r = CliRunner().invoke(cli, ["overhead", F])
    assert r.exit_code == 2 and "use `iommu-trace overhead --phases`" in r.output
    bad = tmp_path / "r.csv"
    bad.write_text("pattern,size\nsingle,64\n")
    r = CliRunner().invoke(cli, ["overhead", A, "--results", str(bad)])
    assert r.exit_code == 2 and "benchmark results lack" in r.output
    assert "Traceback" not in r.output
