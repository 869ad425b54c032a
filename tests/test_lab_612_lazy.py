"""Lazy mode on the lab's 6.12 kernel, from its recording (traces/lab/k612-lazy-dd64k.iot).

A boot costs ~75 s of the suite's 15 minutes, which the 6.12 strict and AMD
boots already spend, so 6.12's lazy contract is checked on a trace the lab
recorded (`iommu-trace lab --kernel 6.12 --mode lazy --bs 64k --count 200`;
booted live it passed on 2026-12-04, 78 s): the dd run's unmaps wait in the
flush queue and are flushed in timer-driven whole-domain flushes, never one sync
per unmap.
"""

from __future__ import annotations

from iommu_trace.analysis import report as R
from iommu_trace.analysis.consistency import disagreements
from iommu_trace.tracefile.reader import load

from conftest import HERE

TRACE = HERE.parent / "traces" / "lab" / "k612-lazy-dd64k.iot"


def test_612_lazy_flushes_in_the_queue():
    t = load(str(TRACE))
    m = t.metadata
    assert m.kernel.release is not None and m.kernel.release.startswith("6.12.")
    assert m.iommu.mode == "lazy"
    paths = {p.name: p.target for p in m.probes}
    assert paths["dma_unmap_sg"] == "raw_tracepoint:dma:dma_unmap_sg"
    r = R.build(t)
    run = next(p for p in r["phases"] if p["phase"].startswith("run ") and "bs=" in p["phase"])
    c = run["counts"]
    assert c["dma_unmap"] == c["iommu_unmap"] == 200
    assert c["flush_strict"] == 0 and c["flush"] == c["flush_queue"] > 0
    assert c["flush"] / c["iommu_unmap"] < 0.5  # a drain flushes many unmaps
    assert r["dropped"] == 0 and r["missed"] == {} and disagreements(m) == []
