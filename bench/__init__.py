"""Microbenchmarks whose timing windows line up with a trace (`iommu-trace bench`)."""
