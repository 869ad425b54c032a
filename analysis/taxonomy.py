"""What the recorded events are: probe groups, ops and the kinds they are counted under.

A leaf: the command line's choices come from here without importing pandas.
"""

from __future__ import annotations

# Kernel-side events that map, unmap or flush (recorded system-wide).
KERNEL_GROUPS = {"dma", "iommu-map", "iotlb-flush", "iova", "nvidia"}
# User-side calls with an entry and a return: the catalog's CUDA probes and --uprobe ones.
CALL_GROUPS = {"cuda-runtime", "cuda-driver", "user"}

# op -> the kind it is counted under
KIND = {
    "map": "map",
    "alloc": "map",
    "unmap": "unmap",
    "free": "unmap",
    "flush": "flush",
    "iova_alloc": "iova",
    "iova_free": "iova",
}
KINDS = ("map", "unmap", "flush", "iova")
