"""The three IOMMU DMA-API modes the lab boots, and how each shows in the guest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    cmdline: str  # kernel command line that selects the mode
    group_type: str  # what /sys/kernel/iommu_groups/N/type reads for the NVMe device


MODES: dict[str, Mode] = {
    # strict: every unmap is followed by a synchronous IOTLB invalidation
    "strict": Mode("strict", "intel_iommu=on iommu.strict=1", "DMA"),
    # lazy: unmapped IOVAs wait in a flush queue; one global flush every ~10 ms
    "lazy": Mode("lazy", "intel_iommu=on iommu.strict=0", "DMA-FQ"),
    # passthrough: identity domain, no IOVA allocation, no map/unmap, no flushes
    "passthrough": Mode("passthrough", "intel_iommu=on iommu.passthrough=1", "identity"),
}
