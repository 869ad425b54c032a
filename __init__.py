"""iommu-trace: what IOMMU protection costs a GPU workload, and where it is paid."""

__version__ = "0.1.0"
