"""The emulated IOMMUs the lab boots: qemu's Intel VT-d and AMD-Vi models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Iommu:
    name: str  # intel | amd: the catalog's `driver` names
    device: str  # qemu -device
    cmdline: str  # what turns the guest's driver on ("" where firmware tables suffice)
    unit_prefix: str  # /sys/class/iommu/<prefix>N: how the guest names its units
    # why the guest kernel runs strict whatever iommu.strict says, where it does
    strict_only: str = ""


IOMMUS: dict[str, Iommu] = {
    "intel": Iommu("intel", "intel-iommu,intremap=on", "intel_iommu=on", "dmar"),
    # AMD-Vi is on wherever the IVRS table describes it (qemu builds one); qemu's
    # model reports NpCache (it caches not-present entries, as hypervisors' do),
    # and on that the driver says "Using strict mode due to virtualization" and
    # calls iommu_set_dma_strict(), which also turns a DMA-FQ default into DMA.
    "amd": Iommu(
        "amd",
        "amd-iommu,intremap=on",
        "",
        "ivhd",
        strict_only="AMD-Vi under emulation is strict: the driver forces it "
        "(NpCache: 'Using strict mode due to virtualization')",
    ),
}
DEFAULT_IOMMU = "intel"
