"""The typed trace metadata: built from the JSON once, missing parts are None, never KeyError."""

from __future__ import annotations

from pathlib import Path

from iommu_trace.tracefile.meta import TraceMeta
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"


def test_recorded_trace_reads_typed():
    t = load(str(TRACES / "lab" / "dd64k-lazy.iot"))
    m = t.metadata
    assert m.kernel.release == t.meta["kernel"]["release"] and m.kernel.release
    assert m.iommu.mode == t.meta["iommu"]["mode"] == "lazy"
    assert m.counts == t.meta["counts"] and m.probes == t.meta["probes"]


def test_missing_and_odd_shapes():
    m = TraceMeta.from_json({"kernel": "6.1.0-28-amd64", "iommu": None, "follow": "all"})
    assert m.kernel.release == "6.1.0-28-amd64" and m.kernel.cmdline is None
    assert m.iommu.mode is None and m.iommu.groups == [] and m.iommu.group_types == []
    assert m.what == "(all)" and m.workload == {}
    assert TraceMeta.from_json({"command": ["dd", "if=/dev/zero"]}).what == "dd if=/dev/zero"
