"""The BTF reader on cut-outs of the kernels at hand (scripts/btf-fixture.py made them).

6.1.0-57: the lab's Debian kernel; 6.12.95: Debian bookworm-backports'
linux-image-amd64; 6.18.44: the Firecracker kernel of the development and GPU
machines. The offsets asserted are the ones the generated BPF programs read.
"""

import platform
from pathlib import Path

import pytest

from iommu_trace.probes import btf as btf_mod
from iommu_trace.probes.btf import BTF, BTFError

FIXTURES = Path(__file__).parent / "fixtures" / "btf"
KERNELS = ["6.1.0-57", "6.12.95", "6.18.44"]


@pytest.fixture(params=KERNELS)
def kernel(request) -> BTF:
    return BTF.load(FIXTURES / f"{request.param}.btf")


def test_struct_device_name(kernel):
    assert kernel.field("device", "kobj.name") == (0, 8)
    assert kernel.field("device", "init_name") == (80, 8)


def test_scatterlist_layout(kernel):
    sg = {f: kernel.field("scatterlist", f) for f in ("page_link", "offset", "length")}
    assert sg == {"page_link": (0, 8), "offset": (8, 4), "length": (12, 4)}
    assert kernel.field("scatterlist", "dma_address") == (16, 8)
    assert kernel.field("scatterlist", "dma_length") == (24, 4)  # CONFIG_NEED_SG_DMA_LENGTH
    assert kernel.struct_size("scatterlist") == 32
    assert kernel.field("sg_table", "sgl") == (0, 8)
    assert kernel.field("sg_table", "orig_nents") == (12, 4)


def test_iommu_tracepoints_same_everywhere(kernel):
    assert kernel.trace_proto("map") == ["long unsigned int", "phys_addr_t", "size_t"]
    assert kernel.trace_proto("unmap") == ["long unsigned int", "size_t", "size_t"]


def test_dma_tracepoint_prototypes():
    k61, k612, k618 = (BTF.load(FIXTURES / f"{k}.btf") for k in KERNELS)
    assert k61.trace_proto("dma_map_sg") is None  # 6.1 has no dma tracepoints
    sg_map = ["struct device *", "struct scatterlist *", "int", "int",
              "enum dma_data_direction", "long unsigned int"]  # fmt: skip
    assert k612.trace_proto("dma_map_sg") == sg_map == k618.trace_proto("dma_map_sg")
    assert k618.trace_proto("dma_unmap_sg") == [
        "struct device *", "struct scatterlist *", "int", "enum dma_data_direction",
        "long unsigned int",
    ]  # fmt: skip
    # dma_map_page became dma_map_phys (same arguments) between the two.
    assert k612.trace_proto("dma_map_page") == k618.trace_proto("dma_map_phys")
    assert k612.trace_proto("dma_map_phys") is None
    assert k618.trace_proto("dma_map_page") is None


def test_subset_round_trips(kernel):
    again = BTF(kernel.subset(["scatterlist"], ["btf_trace_map"]))
    assert again.field("scatterlist", "dma_length") == (24, 4)
    assert again.trace_proto("map") == kernel.trace_proto("map")
    assert not again.has("device")  # not asked for, not embedded


def test_errors(kernel):
    with pytest.raises(BTFError, match="no member"):
        kernel.field("scatterlist", "nonesuch")
    with pytest.raises(BTFError, match="no struct"):
        kernel.field("nonesuch", "x")
    with pytest.raises(BTFError, match="magic"):
        BTF(b"\0" * 32)


def test_running_kernel_matches_its_fixture():
    """On the kernel the 6.18.44 fixture was cut from, the live BTF reads the same."""
    live = btf_mod.running()
    if live is None or not platform.release().startswith("6.18.44"):
        pytest.skip("not a 6.18.44 kernel with BTF")
    cut = BTF.load(FIXTURES / "6.18.44.btf")
    for path in ("page_link", "length", "dma_address", "dma_length"):
        assert live.field("scatterlist", path) == cut.field("scatterlist", path)
    assert live.trace_proto("dma_unmap_sg") == cut.trace_proto("dma_unmap_sg")
