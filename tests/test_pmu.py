"""IOMMU PMU discovery on saved sysfs trees, and the counting path with a real software event."""

from __future__ import annotations

import os
import time

import pytest

from iommu_trace.analysis import pmu_counts
from iommu_trace.system import pmu
from iommu_trace.system.fsview import FsView
from iommu_trace.tracefile.reader import load

from conftest import HERE, cli, requires_bpf

TREES = HERE / "fixtures" / "pmu"


def tree(name: str) -> FsView:
    return FsView(str(TREES / name))


def test_intel_vtd_perfmon_discovery():
    found = pmu.discover(tree("intel"))
    assert [p.name for p in found] == ["dmar0", "dmar1"]  # cpu, software, uncore_iio_0 passed over
    d0, d1 = found
    assert d0.vendor == "intel-vtd" and d0.type == 23 and d0.cpus == (0,)
    assert d0.wanted()[:2] == ["iotlb_lookup", "iotlb_hit"]
    assert d0.requester_filter and not d1.requester_filter
    # event_group 3, event 2, requester 0000:65:00.0 = 0x6500 in config1:16-31, enable bit 0
    assert d0.encode("iotlb_hit", pmu.requester_id("0000:65:00.0")) == {
        "config": 0x30000002, "config1": 0x65000001, "config2": 0,
    }  # fmt: skip
    assert d1.encode("iotlb_lookup", 0x6500) == {"config": 0x30000001, "config1": 0, "config2": 0}


def test_amd_iommu_discovery():
    (a,) = pmu.discover(tree("amd"))
    assert a.name == "amd_iommu_0" and a.vendor == "amd-iommu" and a.requester_filter
    assert "mem_iommu_tlb_pte_mis" in a.wanted()
    w = a.encode("mem_iommu_tlb_pte_mis", pmu.requester_id("c1:00.0"))
    assert w == {"config": 0xC1 << 16 | 0x07, "config1": 0xFFFF, "config2": 0}


def test_doctor_line():
    assert pmu.discover(tree("none")) == []
    line = pmu.doctor_line(tree("none"))
    assert "\n" not in line and "pcm-iio" in line
    assert pmu.doctor_line(tree("intel")).startswith("IOMMU PMU: dmar0 (")


def test_doctor_says_it_in_one_line_here():
    p = cli("doctor")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "iommu-pmu" in ln]
    assert len(lines) == 1
    if not pmu.discover():
        assert "pcm-iio" in lines[0]


def test_requester_id():
    assert pmu.requester_id("0000:00:0a.0") == 0x50
    with pytest.raises(ValueError):
        pmu.requester_id("eth0")


@pytest.mark.skipif(os.geteuid() != 0, reason="system-wide perf events need root")
def test_counting_path_with_a_software_event():
    s = pmu.sampler([], software=("cpu-clock",))
    assert not s.notes and [c.label for c in s.counters] == ["software/cpu-clock"]
    t0 = time.monotonic_ns()
    s.start(t0)
    time.sleep(0.2)
    ((start, dt, label, delta),) = s.tick(time.monotonic_ns(), force=True)
    s.close()
    # cpu-clock on CPU 0 counts that CPU's nanoseconds: about the interval itself
    assert start == t0 and label == "software/cpu-clock" and 0.5 * dt < delta < 1.5 * dt


@requires_bpf
def test_record_counts_into_the_trace(tmp_path):
    out = tmp_path / "sw.iot"
    p = cli("record", "--count-software", "cpu-clock", "-o", str(out), "--", "sleep", "2.2")
    assert p.returncode == 0, p.stderr
    t = load(str(out))
    rows = t.events[t.events["group"] == "pmu"]
    assert len(rows) >= 3 and set(rows["probe"]) == {"software/cpu-clock"}
    assert (rows["dur_ns"] > 0).all() and t.meta["pmu"]["counters"] == ["software/cpu-clock"]
    c = pmu_counts.build(t)
    whole = c.phases[0]
    assert 0.5e9 < whole.per_s["software/cpu-clock"] < 1.5e9
    rep = cli("report", str(out))
    assert "IOMMU PMU counts" in rep.stdout and "software/cpu-clock" in rep.stdout


def test_hit_rates_from_counts():
    r = pmu_counts._rates({"dmar0/iotlb_lookup": 1000.0, "dmar0/iotlb_hit": 900.0,
                           "amd_iommu_0/mem_iommu_tlb_pte_hit": 30.0,
                           "amd_iommu_0/mem_iommu_tlb_pte_mis": 10.0})  # fmt: skip
    assert r == {"dmar0 IOTLB hit rate": 0.9, "amd_iommu_0 PTE TLB hit rate": 0.75}
