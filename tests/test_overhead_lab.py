"""`overhead` on lab traces: dd direct-I/O sweeps (4 KiB..1 MiB) in strict, lazy and passthrough."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from iommu_trace.analysis import overhead_data as od
from iommu_trace.analysis import overhead_fit as oc
from iommu_trace.cli import cli
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"
SWEEP = {m: str(TRACES / "bench" / f"lab-sweep-{m}.iot") for m in ("strict", "lazy", "passthrough")}
SIZES = [4096 << i for i in range(9)]


@pytest.fixture(scope="module")
def sweeps():
    out = {}
    for mode, path in SWEEP.items():
        t = load(path)
        res = od.find_results(path, t.metadata)
        out[mode] = (t, res, od.count_events(t.events, t.metadata, res))
    return out


def col(c, name):
    return [int(x) for x in c[name]]


def test_cells_and_device(sweeps):
    for mode, (_, res, c) in sweeps.items():
        assert res.kind == "dd" and res.label == mode and res.dev == "0000:00:0a.0"
        assert list(c["size"]) == SIZES
        assert col(c, "ops") == [512, 256, 128, 64, 32, 16, 8, 4, 2]  # 2 MiB at each size
        # reads above 512 KiB are split in two requests (qemu NVMe MDTS)
        assert col(c, "N_dma_map") == [512, 256, 128, 64, 32, 16, 8, 4, 4]


def test_exact_counts_strict(sweeps):
    _, _, c = sweeps["strict"]
    assert col(c, "N_flush") == [513, 256, 128, 64, 32, 17, 8, 4, 4]  # one per unmap
    assert col(c, "N_iommu_unmap") == col(c, "N_flush")
    assert col(c, "N_iova_alloc") == [513, 256, 128, 64, 32, 17, 9, 4, 5]
    assert col(c, "N_iommu_map") == [514, 256, 512, 512, 352, 322, 233, 192, 139]


def test_exact_counts_lazy(sweeps):
    _, _, c = sweeps["lazy"]
    assert col(c, "N_iommu_unmap") == [512, 257, 128, 64, 32, 16, 8, 5, 4]
    assert col(c, "N_flush") == [20, 13, 6, 5, 2, 1, 2, 2, 1]  # flush-queue drains, not unmaps


def test_exact_counts_passthrough(sweeps):
    t, res, c = sweeps["passthrough"]
    for cat in ("iommu_map", "iommu_unmap", "flush", "iova_alloc"):
        assert (c["N_" + cat] == 0).all()
    assert od.outside_windows(t.events, t.metadata, res)["dma_map"] == (1024, 1024)


def test_latency_is_the_dma_span(sweeps):
    _, _, c = sweeps["passthrough"]
    assert round(c["lat_us"].iloc[0], 2) == 755.04  # 4 KiB: first to last NVMe DMA event / 512
    assert (c["elapsed_us"] > c["lat_us"]).all()  # dd's start and exit left out


def test_strict_and_lazy_against_passthrough(sweeps):
    base = sweeps["passthrough"][2]
    s = oc.compare(base, sweeps["strict"][2], "pt", "strict", ("passthrough", "strict"))
    assert s.differing == ["iommu_map", "iommu_unmap", "flush", "iova_alloc"]
    assert s.fit.category == "iommu_unmap" and s.fit.cells == 9
    assert round(s.fit.cost_us, 1) == 864.7 and round(s.fit.err_us, 1) == 202.9
    assert round(s.cells["overhead_pct"].median(), 1) == 46.6
    assert "differ with it in every cell, so this is their cost together" in s.statement
    lz = oc.compare(base, sweeps["lazy"][2], "pt", "lazy", ("passthrough", "lazy"))
    assert lz.fit.category == "iommu_unmap" and round(lz.cells["overhead_pct"].median(), 1) == 47.5


def test_strict_against_lazy_is_the_flush(sweeps):
    cmp = oc.compare(sweeps["lazy"][2], sweeps["strict"][2], "lazy", "strict", ("lazy", "strict"))
    assert cmp.fit.category == "flush" and cmp.fit.cells == 9
    assert round(cmp.fit.cost_us) == -2922 and round(cmp.fit.err_us) == 2794
    assert "not distinguishable from zero at this spread" in cmp.statement
    assert cmp.fit.moving == {"iommu_map": 6, "iommu_unmap": 2, "iova_alloc": 3}


def test_cli_three_modes_and_plot(tmp_path):
    png = tmp_path / "lab.png"
    args = ["overhead", SWEEP["passthrough"], SWEEP["strict"], SWEEP["lazy"], "-o", str(png)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "lab-sweep-strict.iot against lab-sweep-passthrough.iot" in r.output
    assert "cost per IOMMU unmap: 865 +- 203 us (fit over 9 cells)" in r.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_lab_dd64k_fixtures_keep_the_mode_contract():
    # the lab's own 64 KiB fixtures: flushes per read are the modes' signature
    lab = TRACES / "lab"
    per = {}
    for mode in ("strict", "lazy", "passthrough"):
        path = str(lab / f"dd64k-{mode}.iot")
        t = load(path)
        res = od.find_results(path, t.metadata)
        per[mode] = od.count_events(t.events, t.metadata, res)["flush"].iloc[0]
    assert per["strict"] >= 1 and 0 < per["lazy"] < 0.5 and per["passthrough"] == 0
