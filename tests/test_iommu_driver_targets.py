"""Driver-specific targets (Intel VT-d vs AMD-Vi) follow the IOMMU units the kernel registered."""

from iommu_trace.probes import catalog, discover


def _units(tmp_path, *names):
    for n in names:
        (tmp_path / n).mkdir()
    return str(tmp_path)


def _targets(probe: str) -> dict[str, catalog.Target]:
    return {t.name: t for t in catalog.load().by_name(probe).targets}


def test_intel_machine_takes_the_intel_flush(tmp_path):
    root = _units(tmp_path, "dmar0", "dmar1")
    assert discover.active_iommu_driver(root) == ("intel", ["dmar0", "dmar1"])
    t = _targets("iotlb_sync")
    assert discover.driver_check(t["intel_iommu_tlb_sync"], root) is None
    why = discover.driver_check(t["amd_iommu_iotlb_sync"], root)
    assert why == "the active IOMMU driver is intel (dmar0, dmar1), not amd"
    assert discover.driver_check(t["iommu_iotlb_sync"], root) is None  # any driver


def test_amd_machine_takes_the_amd_flushes(tmp_path):
    root = _units(tmp_path, "ivhd0")
    t = _targets("iotlb_flush_all")
    assert discover.driver_check(t["amd_iommu_flush_iotlb_all"], root) is None
    assert "not intel" in discover.driver_check(t["intel_flush_iotlb_all"], root)
    assert "not intel" in discover.driver_check(
        _targets("qi_submit")["intel_iommu:qi_submit"], root
    )


def test_no_iommu(tmp_path):
    why = discover.driver_check(_targets("iotlb_sync")["intel_iommu_tlb_sync"], str(tmp_path))
    assert why.startswith("no IOMMU driver is active")


def test_every_driver_function_in_the_catalog_names_its_driver():
    """Distribution kernels build both drivers in, so a target in one driver's code taken
    without `driver =` attaches where it never runs (t_iotlb_sync did so on AMD-Vi, timing
    intel_iommu_tlb_sync, until 2026-12-04)."""
    prefix = {"intel_": "intel", "qi_": "intel", "amd_": "amd"}
    for p in catalog.load().probes:
        for t in p.targets:
            want = next((d for pre, d in prefix.items() if t.name.startswith(pre)), None)
            if t.kind == "kprobe" and want:
                assert t.driver == want, (p.name, t.name, t.driver)
