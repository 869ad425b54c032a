"""Counts that must agree, on real lab traces: two probes on one kernel function."""

from __future__ import annotations

from iommu_trace.analysis import report as R
from iommu_trace.analysis.consistency import disagreements
from iommu_trace.render import report as report_text
from iommu_trace.tracefile.reader import load

from conftest import HERE, cli

LAB = HERE.parent / "traces" / "lab"
STOPPED = LAB / "k612-kprobe-stops-after-rmmod.iot"


def test_a_kprobe_that_stopped_is_flagged():
    t = load(str(STOPPED))
    (d,) = disagreements(t.metadata)
    assert d.function == "intel_iommu_tlb_sync"
    assert d.counts == {"iotlb_sync": 27, "t_iotlb_sync": 228}
    r = R.build(t)
    assert r["disagree"] == [d.line()]
    # the lab's plan of workloads in the sidecar is not FlexGen's phases: report runs
    p = cli("report", str(STOPPED))
    assert p.returncode == 0, p.stderr
    assert "WARNING: probes on the same kernel function intel_iommu_tlb_sync" in p.stdout
    assert "WARNING" in report_text.to_text(r).splitlines()[1]
    info = cli("info", str(STOPPED))
    assert "iotlb_sync 27, t_iotlb_sync 228" in info.stdout


def test_agreeing_probes_say_nothing():
    # 6.1 lab traces with the timed probes: each pair on one function counted alike
    for name, pair in (("dd64k-timed-strict.iot", ("iotlb_sync", "t_iotlb_sync")),
                       ("dd64k-timed-lazy.iot", ("iotlb_flush_all", "t_flush_all"))):  # fmt: skip
        m = load(str(LAB / name)).metadata
        a, b = (m.counts[p] for p in pair)
        assert a == b > 0
        assert disagreements(m) == []
