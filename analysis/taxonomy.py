"""What the recorded events are: probe groups, ops and the kinds they are counted under.

A leaf: the command line's choices come from here without importing pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Driver-level flush entry points; each call is one IOTLB invalidation.
FLUSH_ENTRY_PROBES = ("iotlb_sync", "iotlb_flush_all")
# Used only where no entry point attached (e.g. a kernel with only the tracepoint).
FLUSH_FALLBACK_PROBES = ("qi_submit",)


@dataclass(frozen=True)
class Category:
    """What events count under a name: by probe name, or by probe group and op."""

    name: str
    label: str  # report's row label
    probes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    short: str = ""  # table column heading (overhead, phases)
    noun: str = ""  # in sentences ("3 of 10 DMA maps")


CATEGORIES = (
    Category("dma_map", "DMA API maps", groups=("dma",), ops=("map",), short="MAP",
             noun="DMA maps"),
    Category("dma_unmap", "DMA API unmaps", groups=("dma",), ops=("unmap",), short="UNMAP",
             noun="DMA unmaps"),
    Category("dma_alloc", "coherent DMA allocs", groups=("dma",), ops=("alloc",)),
    Category("iommu_map", "IOMMU page-table maps", probes=("iommu_map",), short="IOMAP",
             noun="IOMMU maps"),
    Category("iommu_unmap", "IOMMU page-table unmaps", probes=("iommu_unmap",), short="IOUNMAP",
             noun="IOMMU unmaps"),
    Category("flush", "IOTLB flushes", probes=FLUSH_ENTRY_PROBES, short="FLUSH",
             noun="IOTLB flushes"),
    Category("flush_strict", "  strict: sync per unmap", probes=("iotlb_sync",)),
    Category("flush_queue", "  lazy: flush-queue drains", probes=("fq_flush",)),
    Category("flush_timer", "    of which timer-driven", probes=("fq_flush_timeout",)),
    # not a flush: it invalidates only where the IOMMU caches non-present entries
    Category("sync_map", "IOTLB syncs after a map",
             probes=("iotlb_sync_map",)),
    Category("qi_submit", "VT-d invalidation descriptors", probes=("qi_submit",)),
    Category("iova_alloc", "IOVA allocs", groups=("iova",), ops=("iova_alloc",), short="IOVA",
             noun="IOVA allocations"),
    Category("iova_free", "IOVA frees", groups=("iova",), ops=("iova_free",)),
)  # fmt: skip
BY_NAME = {c.name: c for c in CATEGORIES}

# The categories the overhead and phase analyses count per operation, each from one
# layer, so none is counted twice:
#   dma_*    what drivers ask of the DMA API (dma_map_page/sg ...), with or without an IOMMU
#   iommu_*  IOMMU page-table updates (iommu:map fires per contiguous chunk, iommu:unmap per range)
#   flush    IOTLB invalidations: iotlb_sync (strict: one per unmap) + iotlb_flush_all
#            (lazy: one per flush-queue drain); intel_iommu:qi_submit only where neither attached
#   iova     IOVA allocations
COST_CATEGORIES = ["dma_map", "dma_unmap", "iommu_map", "iommu_unmap", "flush", "iova_alloc"]
SHORT = {c: BY_NAME[c].short for c in COST_CATEGORIES}
LABEL = {c: BY_NAME[c].noun for c in COST_CATEGORIES}
