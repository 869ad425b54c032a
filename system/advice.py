"""What IOMMU modes mean for DMA cost and isolation, and how to choose and set one.

Kept as data so `doctor` prints it in text and JSON alike and docs/system.md
can quote it.
"""

from __future__ import annotations

# One line per group type: what a DMA costs and what it protects.
GROUP_TYPE_MEANING = {
    "identity": "passthrough: DMA addresses are physical; no page-table or IOTLB work per "
    "map/unmap; no isolation: the device can reach all of memory",
    "DMA-FQ": "translated, lazy: each map writes IOMMU page tables; unmaps are batched and the "
    "IOTLB flushed later (flush queue): cheap, but a freed buffer stays reachable by "
    "the device until the next flush (milliseconds)",
    "DMA": "translated, strict: every unmap invalidates the IOTLB before returning: full "
    "isolation; costs a synchronous invalidation (microseconds) per unmap, which adds up "
    "for frequent small mappings (NIC packets, NVMe I/O)",
    "unmanaged": "owned by a user-space driver (VFIO/iommufd, e.g. a VM): its mappings are the "
    "owner's, not the kernel DMA API's",
    "blocked": "DMA blocked (no driver, or being reset)",
}

MODE_MEANING = {
    "off": "no IOMMU: DMA goes to physical addresses with no translation and no isolation "
    "(as passthrough, but VFIO device assignment is impossible)",
    "passthrough": GROUP_TYPE_MEANING["identity"],
    "lazy": GROUP_TYPE_MEANING["DMA-FQ"],
    "strict": GROUP_TYPE_MEANING["DMA"],
    "mixed": "groups differ: see each group's line",
    "unknown": "IOMMU present but every group is owned by user space or blocked",
}

# Boot parameters per vendor and mode.  AMD's IOMMU is on by default when the
# firmware enables it, so it needs no "on" switch (amd_iommu=on is not an option).
BOOT_PARAMS = {
    "intel": {
        "passthrough": "intel_iommu=on iommu=pt",
        "lazy": "intel_iommu=on iommu.strict=0",
        "strict": "intel_iommu=on iommu.strict=1",
        "off": "intel_iommu=off",
    },
    "amd": {
        "passthrough": "iommu=pt",
        "lazy": "iommu.strict=0",
        "strict": "iommu.strict=1",
        "off": "amd_iommu=off",
    },
    "any": {  # ARM SMMU, virtio-iommu and the others
        "passthrough": "iommu.passthrough=1",
        "lazy": "iommu.passthrough=0 iommu.strict=0",
        "strict": "iommu.passthrough=0 iommu.strict=1",
    },
}

APPLY_DEBIAN = [
    "edit GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub (add the parameters above)",
    "update-grub && reboot",
]

CHECK_AFTER_REBOOT = [
    "cat /proc/cmdline",
    "cat /sys/kernel/iommu_groups/*/type | sort | uniq -c   # identity | DMA-FQ | DMA",
    "dmesg | grep -iE 'DMAR|AMD-Vi|iommu: Default domain|TLB invalidation'",
    "iommu-trace doctor",
]

RUNTIME_SWITCH = (
    "one group at runtime (Linux 5.11+, DMA-FQ since 5.15): unbind the drivers of all the "
    "group's devices, echo identity|DMA-FQ|DMA > /sys/kernel/iommu_groups/N/type, rebind"
)

RECOMMENDATIONS = {
    "gpu": [
        "GPU node, one trusted tenant, bare metal: passthrough (keep the IOMMU on, add iommu=pt). "
        "Pinned buffers are mapped once at cudaHostRegister/cudaMallocHost, so translation costs "
        "little per copy, but peer-to-peer and GPUDirect traffic is redirected through the root "
        "complex for translation when the IOMMU translates: passthrough avoids that.",
        "GPU node shared by tenants or running untrusted code: lazy (the default on most "
        "kernels). Mapping cost is paid at allocation/registration; use iommu-trace to see how "
        "much of it your workload pays.",
        "GPUs passed to VMs (VFIO): the IOMMU must be on; the host mode applies only to host "
        "drivers, guest memory is mapped by VFIO (group type 'unmanaged').",
    ],
    "rdma": [
        "RDMA node: memory is registered once (ibv_reg_mr pins and maps it), so the mode mostly "
        "costs at registration; passthrough for dedicated, trusted HPC/AI fabrics, lazy otherwise.",
        "GPUDirect RDMA needs the NIC and GPU under one PCIe switch (PIX/PXB in `iommu-trace "
        "topo --path`), nvidia_peermem (or dma-buf) loaded, and no ACS redirect between them: "
        "with a translating IOMMU the peer traffic detours through the root complex.",
        "Kernel TCP/IP on 100G+ NICs maps and unmaps every packet: strict costs measurable "
        "throughput and CPU there; lazy recovers most of it.",
    ],
    "trade_off": [
        "passthrough: fastest, no protection from a faulty or malicious device",
        "lazy: small cost, protection except for a short window after each unmap",
        "strict: full protection, a synchronous IOTLB invalidation on every unmap",
    ],
}

# Debian package -> why it is needed (keyed by the check that asks for it).
PACKAGES = {
    "bcc": (
        "python3-bpfcc",
        "BCC, to compile and load the recorder's BPF programs "
        "(the venv needs --system-site-packages to see it)",
    ),
    "headers": ("linux-headers-amd64", "kernel headers for BCC (or linux-headers-$(uname -r))"),
    "dot": ("graphviz", "`dot`, to draw `iommu-trace topo -o topo.svg`"),
    "qemu": ("qemu-system-x86", "the IOMMU lab VM (emulated Intel VT-d)"),
    "pyroute2": ("python3-pyroute2", "netlink link table for `iommu-trace topo`"),
    "lspci": ("pciutils", "lspci -tv, to compare with `iommu-trace topo` by hand"),
}
