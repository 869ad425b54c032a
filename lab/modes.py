"""The three IOMMU DMA-API modes the lab boots, and how each shows in the guest."""

from __future__ import annotations

from dataclasses import dataclass

from .iommus import Iommu


@dataclass(frozen=True)
class Mode:
    name: str
    option: str  # the iommu.* kernel parameter that selects the mode
    group_type: str  # what /sys/kernel/iommu_groups/N/type reads for the NVMe device

    def cmdline(self, iommu: Iommu) -> str:
        """The kernel command line for this mode under that IOMMU driver."""
        return " ".join(p for p in (iommu.cmdline, self.option) if p)

    def expected_group_type(self, iommu: Iommu) -> str:
        # a driver that forces strict turns lazy's DMA-FQ into DMA
        return "DMA" if iommu.strict_only and self.group_type == "DMA-FQ" else self.group_type


MODES: dict[str, Mode] = {
    # strict: every unmap is followed by a synchronous IOTLB invalidation
    "strict": Mode("strict", "iommu.strict=1", "DMA"),
    # lazy: unmapped IOVAs wait in a flush queue; one global flush every ~10 ms
    "lazy": Mode("lazy", "iommu.strict=0", "DMA-FQ"),
    # passthrough: identity domain, no IOVA allocation, no map/unmap, no flushes
    "passthrough": Mode("passthrough", "iommu.passthrough=1", "identity"),
}
