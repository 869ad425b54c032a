"""Address pseudonyms: equal stays equal, pages and contiguity survive, absolutes do not."""

import numpy as np

from iommu_trace.tracer.addresses import Pseudonymizer


def test_pseudonyms_keep_joins_and_pages_but_not_values():
    p = Pseudonymizer()
    raw = np.array([0x1_2340_5678, 0x1_2340_6000, 0xFFFF_8000_0020_1000, 0x1_2340_5678], np.uint64)
    out = p("iova", raw)
    assert out[0] == out[3]  # a map joins its unmap
    assert out[1] - (out[0] & ~np.uint64(0xFFF)) == 0x1000  # same region: page distance kept
    assert (out & np.uint64(0xFFF) == 0).all()  # page granular
    assert not set(out.tolist()) & set(raw.tolist())
    assert out[0] >> np.uint64(21) == 1 and out[2] >> np.uint64(21) == 2  # first-seen order
    again = p("iova", np.array([0xFFFF_8000_0020_1000], np.uint64))
    assert again[0] == out[2]  # stable across batches of one trace
    assert p("addr", np.array([0x1_2340_5678], np.uint64))[0] >> np.uint64(21) == 1  # per column
    assert p("iova", np.array([0], np.uint64))[0] == 0
