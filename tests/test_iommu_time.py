"""T_IOMMU on the lab's timed fixtures (strict, lazy, passthrough: the same 300 x 64 KiB dd)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from iommu_trace.analysis import iommu_time as it
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli

LAB = TRACES / "lab"
RUN = "run 1 bs=65536"


def timed(mode: str):
    return load(str(LAB / f"dd64k-timed-{mode}.iot"))


@pytest.fixture(scope="module")
def per_mode():
    return {m: it.build(timed(m)) for m in ("strict", "lazy", "passthrough")}


def row(t: it.IommuTime, op: str) -> it.OpRow:
    return next(r for r in t.ops if r.phase == RUN and r.op == op)


def test_strict_unmap_pays_its_flush_lazy_does_not(per_mode):
    strict, lazy = row(per_mode["strict"], "unmap"), row(per_mode["lazy"], "unmap")
    assert strict.t_iommu.n == 300 and lazy.t_iommu.n == 300
    assert strict.t_iommu.median_us > lazy.t_iommu.median_us
    assert strict.t_iommu.p99_us >= strict.t_iommu.median_us > 0
    # the difference is the synchronous invalidation: strict unmaps hold it, lazy ones do not
    flush = strict.components_s["iotlb-flush"] + strict.components_s["invalidation-wait"]
    assert flush / strict.t_iommu.n * 1e6 > 0.5 * (strict.t_iommu.mean_us - lazy.t_iommu.mean_us)
    assert lazy.components_s.get("iotlb-flush", 0) == 0
    # lazy's flushes run from the timer, outside any call
    assert per_mode["lazy"].background["flush-queue"] > 0
    assert 0 < strict.share_median <= 1 and 0 < lazy.share_median <= 1


def test_per_flush_distributions(per_mode):
    syncs = [f for f in per_mode["strict"].flushes if f.probe == "t_iotlb_sync" and f.phase == RUN]
    assert syncs and syncs[0].dur.n == 300 and syncs[0].dur.p99_us >= syncs[0].dur.median_us > 0
    timer = [f for f in per_mode["lazy"].flushes if f.probe == "t_fq_timer" and f.phase == RUN]
    assert timer and timer[0].dur.n == 30


def test_t_iommu_fits_in_the_run(per_mode):
    for mode, t in per_mode.items():
        assert t.measured, mode
        assert 0 <= t.total_s <= t.run_s, mode
        for r in t.ops:  # per call: never more IOMMU time than the call's own time
            assert r.t_iommu.total_s <= r.own.total_s + 1e-9, (mode, r)
    assert per_mode["passthrough"].total_s == 0  # identity domain: no IOMMU code runs
    assert per_mode["strict"].total_s > 0 and per_mode["lazy"].total_s > 0


def test_each_nanosecond_once():
    # an interrupt's unmap inside a map of the same thread, and a timer softirq inside an
    # unmap: each belongs to itself, not to the call it interrupted
    rows = [  # ts, dur, probe, group, op
        (0, 100, "dma_map_sg", "dma", "map"),
        (10, 80, "t_dma_iommu_map_sg", "iommu-time", "map"),
        (20, 10, "t_pgtable_map", "iommu-time", "map"),
        (40, 30, "dma_unmap_sg", "dma", "unmap"),  # the interrupt
        (45, 20, "t_dma_iommu_unmap_sg", "iommu-time", "unmap"),
        (50, 5, "t_iotlb_sync", "iommu-time", "flush"),
        (200, 50, "dma_unmap_sg", "dma", "unmap"),
        (210, 30, "t_fq_timer", "iommu-time", "flush"),  # softirq on interrupt exit
        (215, 10, "t_flush_all", "iommu-time", "flush"),
    ]
    ev = pd.DataFrame(rows, columns=["ts_ns", "dur_ns", "probe", "group", "op"])
    ev["tid"], ev["cpu"] = 7, 0
    names = list(it.COMPONENT)
    calls, background = it._calls_and_background(it._trees(ev, names))
    by_ts = {c.ts_ns: c for c in calls}
    assert by_ts[0].own_ns == 70 and by_ts[0].t_iommu_ns == 80 - 30  # the unmap taken out
    assert by_ts[0].components == {"dma-iommu": 40, "page-table": 10}
    assert by_ts[40].t_iommu_ns == 20 and by_ts[40].components["iotlb-flush"] == 5
    assert by_ts[200].own_ns == 20 and by_ts[200].t_iommu_ns == 0
    assert sorted((c, n) for _, c, n in background) == [("flush-queue", 20), ("iotlb-flush", 10)]


def test_report_and_overhead_show_it():
    p = cli("report", str(LAB / "dd64k-timed-strict.iot"))
    assert p.returncode == 0, p.stderr
    assert "time inside IOMMU code" in p.stdout and "IOTLB sync (strict, per unmap)" in p.stdout
    j = json.loads(cli("report", str(LAB / "dd64k-timed-lazy.iot"), "--format", "json").stdout)
    assert j["iommu_time"]["measured"] and j["iommu_time"]["ops"]
    p = cli(
        "overhead", str(LAB / "dd64k-timed-passthrough.iot"), str(LAB / "dd64k-timed-strict.iot")
    )
    assert p.returncode == 0, p.stderr
    assert "dd64k-timed-strict.iot: time inside IOMMU code" in p.stdout


def test_unmeasured_terms_are_named():
    # the GPU machine has no kprobes: the trace says why T_IOMMU is not there
    t = it.build(load(str(TRACES / "h100" / "h100-pinned-cupy.iot")))
    assert not t.measured and t.unmeasured[0].startswith("T_IOMMU")
    assert any(u.startswith("T_DMA") for u in t.unmeasured)
