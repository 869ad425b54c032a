"""Events in interrupt context: their path starts at the interrupt, with no user stack joined."""

from __future__ import annotations

from iommu_trace.analysis import callgraph as cg
from iommu_trace.tracefile.reader import load

from conftest import TRACES


def test_irq_unmaps_do_not_borrow_the_interrupted_tasks_stack():
    ev = load(str(TRACES / "lab" / "dd64k-strict.iot")).events
    syncs = ev[ev.probe == "iotlb_sync"].to_dict("records")
    # every strict flush here runs in the NVMe completion interrupt, and 56 of
    # them carry the user stack of whatever task the interrupt hit
    assert len(syncs) == 306
    assert sum(1 for r in syncs if r["ustack"] is not None and len(r["ustack"])) == 56
    for r in syncs:
        path = [f.fn for f in cg.event_frames(r)]
        assert cg.IRQ_ENTRY.fullmatch(path[0]), path[:3]
        assert not any(not f.kernel for f in cg.event_frames(r))
        assert path[-1] == "intel_iommu_tlb_sync"
