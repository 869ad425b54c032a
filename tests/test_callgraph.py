"""The joined user+kernel call graph, built from the real H100 recordings in traces/h100."""

from __future__ import annotations

import networkx as nx
import pytest

from iommu_trace.analysis import callgraph as cg
from iommu_trace.analysis import frames
from iommu_trace.tracefile.reader import load

from conftest import TRACES

H100 = TRACES / "h100"
MIB = 1 << 20

# cudaHostAlloc(4 KiB .. 16 MiB) in cupy, as traces/README.md shows it: the
# runtime (linked into cupy's runtime module), the driver, the ioctl, nvidia.ko's
# RM API creating an OS descriptor for the pages and mapping it for the GPU.
ALLOC_PATH = [
    "cudaHostAlloc", "cuMemHostAlloc", "ioctl",
    "entry_SYSCALL_64_after_hwframe", "do_syscall_64", "x64_sys_call", "__x64_sys_ioctl",
    "nvidia_unlocked_ioctl", "rm_ioctl", "RmIoctl", "RmCreateOsDescriptor",
    "Nv04VidHeapControlWithSecInfo", "RmDeprecatedVidHeapControl", "_nvos32FunctionAllocOsDesc",
    "_rmAllocForDeprecatedApi", "rmapiAllocWithSecInfoTls", "rmapiAllocWithSecInfo",
    "serverAllocResource", "serverAllocResourceUnderLock", "_clientAllocResourceHelper",
    "resservResourceFactory", "__nvoc_objCreateDynamic", "__nvoc_objCreate_OsDescMemory",
    "osdescConstruct_IMPL", "osCreateMemFromOsDescriptor", "memdescMapIommu",
    "iovaspaceAcquireMapping_IMPL", "osIovaMap", "nv_dma_map_alloc",
    "nv_dma_map_scatterlist.constprop.0", "nv_map_dma_map_scatterlist", "dma_map_sg_attrs",
    "__dma_map_sg_attrs",
]  # fmt: skip
FREE_TAIL = ["RmIoctl", "Nv01FreeWithSecInfo", "rmapiFreeWithSecInfoTls", "rmapiFreeWithSecInfo",
             "serverFreeResourceTree", "serverFreeResourceTreeUnderLock",
             "rmclientFreeResource_IMPL", "clientFreeResource_IMPL", "__nvoc_objDelete",
             "__nvoc_dtor_Memory", "memDestruct_IMPL", "memdescDestroy.part.0",
             "iovaspaceDestroyMapping_IMPL", "osIovaUnmap", "nv_dma_unmap_alloc",
             "nv_unmap_dma_map_scatterlist", "dma_unmap_sg_attrs"]  # fmt: skip


@pytest.fixture(scope="module")
def adhoc():
    return load(str(H100 / "h100-copies-adhoc.iot"))


@pytest.fixture(scope="module")
def cupy():
    return load(str(H100 / "h100-pinned-cupy.iot"))


@pytest.fixture(scope="module")
def torch():
    return load(str(H100 / "h100-pinned-torch.iot"))


def chain(g: nx.DiGraph) -> list[str]:
    """The graph as one path (it must be one), named frames only."""
    assert all(g.in_degree(n) <= 1 and g.out_degree(n) <= 1 for n in g), "not a single path"
    return [g.nodes[n]["fn"] for n in nx.topological_sort(g) if not g.nodes[n]["run"]]


def node(g: nx.DiGraph, fn: str) -> dict:
    hits = cg.find(g, fn)
    assert len(hits) == 1, (fn, hits)
    return g.nodes[hits[0]]


def test_cudahostalloc_to_dma_map_sg_is_one_path_with_its_counts(adhoc):
    g = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc",), to_fn=("__dma_map_sg_attrs",)))
    assert chain(g) == ALLOC_PATH
    # 8 allocations, 4 of them map a chunk: 2 MiB, 2 MiB, 16 MiB, 16 MiB.
    for _, _, a in g.edges(data=True):
        assert a["events"] == {"map": 4}
        assert a["bytes"] == {"map": 36 * MIB}
    assert node(g, "cudaHostAlloc")["calls"] == 8
    assert node(g, "cuMemHostAlloc")["calls"] == 8
    leaf = node(g, "__dma_map_sg_attrs")
    assert leaf["leaf"] and leaf["probes"] == {"dma_map_sg": 4}
    # The unnamed frames: 2 of cudart linked into cupy, 11 stripped libcuda frames.
    runs = sorted((a["obj"], a["frames_max"]) for _, a in g.nodes(data=True) if a["run"])
    assert runs == [("libcuda.so.580.159.04", 11), ("runtime.cpython-312-x86_64-linux-gnu.so", 2)]


def test_layers_along_the_path(adhoc):
    g = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc",), to_fn=("__dma_map_sg_attrs",)))
    layers = {a["fn"]: a["layer"] for _, a in g.nodes(data=True)}
    assert layers["cudaHostAlloc"] == "cuda_runtime"
    assert layers["cuMemHostAlloc"] == "cuda_driver"
    assert layers["ioctl"] == layers["__x64_sys_ioctl"] == "syscall"
    assert layers["osIovaMap"] == "nvidia"
    assert layers["dma_map_sg_attrs"] == "dma_api"
    order = [frames.LAYER_ORDER.index(g.nodes[n]["layer"]) for n in nx.topological_sort(g)]
    assert order == sorted(order), "the path goes down the layers, never back up"


def test_driver_api_path_in_every_cupy_trace():
    for name in ("h100-pinned-cupy", "h100-copies-probed", "h100-copies-adhoc"):
        t = load(str(H100 / f"{name}.iot"))
        g = cg.build(t, cg.Options(from_fn=("cuMemHostAlloc",), to_fn=("dma_map_sg_attrs",)))
        assert chain(g) == ALLOC_PATH[1:-1], name
        assert g.graph["events"] == {"map": 4} and g.graph["bytes"] == {"map": 36 * MIB}


def test_torch_pinned_memory_goes_the_same_way(torch):
    # torch's caching host allocator calls cudaHostAlloc in libcudart.so.13.
    g = cg.build(torch, cg.Options(from_fn=("cudaHostAlloc",), to_fn=("__dma_map_sg_attrs",)))
    assert chain(g) == ALLOC_PATH
    assert node(g, "cudaHostAlloc")["obj"] == "libcudart.so.13"
    assert g.graph["events"] == {"map": 4} and g.graph["bytes"] == {"map": 36 * MIB}


def test_free_path_reaches_dma_unmap(cupy):
    g = cg.build(cupy, cg.Options(from_fn=("cuMemFreeHost",)))
    assert chain(g)[-len(FREE_TAIL) :] == FREE_TAIL
    assert chain(g)[0] == "cuMemFreeHost"
    # each chunk unmapped on the last free of it; sizes from the maps they undo
    assert g.graph["events"] == {"unmap": 4} and g.graph["bytes"] == {"unmap": 36 * MIB}
    assert node(g, "dma_unmap_sg_attrs")["probes"] == {"dma_unmap_sg": 4}


def test_torch_free_path_whose_kernel_stacks_were_lost(torch):
    # In this recording the 3 unmaps under cudaFreeHost carry a user stack but no
    # kernel stack: the path ends in a node that says so, not in a made-up frame.
    g = cg.build(torch, cg.Options(from_fn=("cudaFreeHost",)))
    leaf = [a for _, a in g.nodes(data=True) if a["leaf"]]
    assert [a["fn"] for a in leaf] == [cg.NO_KSTACK]
    assert leaf[0]["probes"] == {"dma_unmap_sg": 3}
    assert node(g, "cudaFreeHost")["calls"] == 7


def test_registration_maps_pages_and_sg_lists(cupy):
    g = cg.build(cupy, cg.Options(from_fn=("cuMemHostRegister",)))
    # 4 KiB -> one page mapping (dma_map_phys), 64 KiB, 1 MiB, 16 MiB -> sg lists
    assert node(g, "dma_map_phys")["probes"] == {"dma_map": 1}
    assert node(g, "dma_map_phys")["bytes"] == {"map": 4096}
    assert node(g, "__dma_map_sg_attrs")["probes"] == {"dma_map_sg": 3}
    assert node(g, "__dma_map_sg_attrs")["lb"] == {"map"}  # 256 and 3388 entries > 128 kept
    assert nx.has_path(g, cg.find(g, "RmCreateOsDescriptor")[0], cg.find(g, "dma_map_phys")[0])
    g = cg.build(cupy, cg.Options(from_fn=("cuMemHostUnregister",)))
    assert g.graph["events"] == {"unmap": 3}  # the 16 MiB unregister unmapped nothing


def test_uvm_paths_at_context_creation(cupy):
    g = cg.build(cupy, cg.Options(to_fn=("dma_map_phys",)))
    pool = node(g, "uvm_api_alloc_semaphore_pool")
    assert pool["layer"] == "nvidia_uvm" and pool["events"] == {"map": 512}
    assert nx.has_path(g, cg.find(g, "cuDevicePrimaryCtxRetain")[0], cg.find(g, "uvm_ioctl")[0])
    # ... and their unmaps when the process exits (uvm_release on the last fput)
    g = cg.build(cupy, cg.Options(from_fn=("uvm_release_entry",), to_fn=("dma_unmap_phys",)))
    assert g.graph["events"]["unmap"] == 512 + 14


def test_whole_graph_counts_every_event(cupy):
    g = cg.build(cupy)
    st = g.graph["stats"]
    assert st.events == 555 + 21 + 555 + 20 and st.no_stack == 0
    assert g.graph["events"] == {"map": 576, "unmap": 575}
    roots = {a["fn"] for _, a in g.nodes(data=True) if a["root"]}
    # user stacks start one application frame above the CUDA entry point;
    # the exit-time unmaps have kernel stacks only
    assert "entry_SYSCALL_64_after_hwframe" in roots
    assert any(r.startswith("__pyx_f_") for r in roots)


def test_collapse_keeps_landmarks_and_counts(adhoc):
    full = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc",)))
    small = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc",), collapse=True))
    assert small.number_of_nodes() < full.number_of_nodes() - 8
    kept = chain(small)
    for fn in ("cudaHostAlloc", "cuMemHostAlloc", "ioctl", "nvidia_unlocked_ioctl", "RmIoctl",
               "RmCreateOsDescriptor", "osIovaMap", "nv_dma_map_alloc", "dma_map_sg_attrs",
               "__dma_map_sg_attrs"):  # fmt: skip
        assert fn in kept
    assert "serverAllocResource" not in kept
    hidden = sum(a["frames_max"] for _, a in small.nodes(data=True) if a["run"])
    assert len(kept) + hidden == len(ALLOC_PATH) + 2 + 11
    assert small.graph["events"] == full.graph["events"] == {"map": 4}
    # --keep brings a frame back
    more = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc",), collapse=True,
                                      keep=("serverAllocResource",)))  # fmt: skip
    assert "serverAllocResource" in chain(more)


def test_several_from_make_alloc_and_free_one_figure(adhoc):
    g = cg.build(adhoc, cg.Options(from_fn=("cudaHostAlloc", "cudaFreeHost"), collapse=True))
    roots = sorted(g.nodes[n]["fn"] for n in g if g.in_degree(n) == 0)
    assert roots == ["cudaFreeHost", "cudaHostAlloc"]
    leaves = sorted(g.nodes[n]["fn"] for n in g if g.out_degree(n) == 0)
    assert leaves == ["__dma_map_sg_attrs", "dma_unmap_sg_attrs"]
    # they share the ioctl down to RmIoctl, then part
    rm = node(g, "RmIoctl")
    assert rm["events"] == {"map": 4, "unmap": 4}
    assert g.out_degree(cg.find(g, "RmIoctl")[0]) == 2


def test_from_to_errors_are_one_clear_line(adhoc):
    evs = cg.dma_events.kernel_events(adhoc)
    opts = cg.Options(from_fn=("cudaMallocHost",))
    g = cg.build_from_events(evs, opts)
    with pytest.raises(cg.GraphError, match=r"^--from cudaMallocHost: no recorded stack has"):
        cg.check(g, "t.iot", evs, opts)
    opts = cg.Options(from_fn=("cuMemFreeHost",), to_fn=("dma_map_sg_attrs",))
    g = cg.build_from_events(evs, opts)
    with pytest.raises(cg.GraphError, match="no recorded stack goes from cuMemFreeHost down to"):
        cg.check(g, "t.iot", evs, opts)


def test_labels_are_readable():
    p = frames.parse
    assert frames.label(p("nv_dma_map_scatterlist.constprop.0 [nvidia]", True)) == (
        "nv_dma_map_scatterlist"
    )
    assert frames.label(p("dma_map_phys+0x1a/0x90 [kernel]", True)) == "dma_map_phys"
    cy = "__pyx_f_13cupy_backends_4cuda_3api_7runtime_hostAlloc(unsigned long, unsigned int, int)"
    assert frames.label(p(f"{cy} [runtime.cpython-312-x86_64-linux-gnu.so]", False)) == (
        "runtime.hostAlloc"
    )
    cpp = ("at::cuda::(anonymous namespace)::CUDACachingHostAllocatorImpl::"
           "allocate_host_memory_slowpath(unsigned long, void**) [libtorch_cuda.so]")  # fmt: skip
    assert frames.label(p(cpp, False)) == (
        "CUDACachingHostAllocatorImpl::\nallocate_host_memory_slowpath"
    )
    if frames.demangle("_ZN2at4cuda3fooEv") != "_ZN2at4cuda3fooEv":  # c++filt present
        assert frames.label(p("_ZN2at4cuda3fooEv [libx.so]", False)) == "cuda::foo"
    assert frames.short_object("libcuda.so.580.159.04", False) == "libcuda.so"
    assert frames.short_object("runtime.cpython-312-x86_64-linux-gnu.so", False) == "runtime.so"


def test_layers_of_iommu_and_dma_frames():
    def layer(s: str) -> str:
        return frames.layer_of(frames.parse(s, kernel=True))

    for fn in ("iommu_dma_map_page", "__iommu_dma_map", "iommu_map_atomic", "__iommu_map",
               "__iommu_unmap", "intel_iommu_tlb_sync", "alloc_iova_fast", "free_iova_fast",
               "queue_iova", "fq_flush_timeout", "qi_submit_sync", "iommu_dma_map_sg"):  # fmt: skip
        assert layer(f"{fn} [kernel]") == "iommu", fn
    for fn in ("dma_map_page_attrs", "dma_map_phys", "__dma_map_sg_attrs", "dma_unmap_sg_attrs",
               "swiotlb_map"):  # fmt: skip
        assert layer(f"{fn} [kernel]") == "dma_api", fn
    assert layer("uvm_gpu_map_cpu_pages [nvidia_uvm]") == "nvidia_uvm"
    assert layer("osIovaMap [nvidia]") == "nvidia"
    assert layer("__x64_sys_ioctl [kernel]") == "syscall"
    assert layer("do_exit [kernel]") == "kernel"


def test_iommu_layer_in_the_lab_traces():
    # The lab VM's dd on an NVMe disk behind emulated VT-d (traces/lab): the
    # paths go on below the DMA API into the IOMMU layer. Relations, not the
    # exact counts of those fixtures, are checked.
    lab = TRACES / "lab"
    strict = load(str(lab / "dd64k-strict.iot"))
    g = cg.build(strict, cg.Options(to_fn=("__iommu_map",)))
    assert g.graph["events"]["map"] > 0
    page = cg.find(g, "iommu_dma_map_page")[0]
    assert g.nodes[page]["layer"] == "iommu"
    assert nx.has_path(g, page, cg.find(g, "__iommu_map")[0])
    # strict: every IOMMU unmap is followed by its own IOTLB sync
    flushes = cg.build(strict, cg.Options(probes=("iotlb_sync",)))
    unmaps = cg.build(strict, cg.Options(probes=("iommu_unmap",)))
    leaves = {a["fn"] for _, a in flushes.nodes(data=True) if a["leaf"]}
    assert leaves == {"intel_iommu_tlb_sync"}
    assert flushes.graph["events"]["flush"] == unmaps.graph["events"]["unmap"] > 0
    # lazy: flushes come from the flush queue, fewer than the unmaps
    lazy = load(str(lab / "dd64k-lazy.iot"))
    flushes = cg.build(lazy, cg.Options(kinds=("flush",)))
    leaves = {a["fn"] for _, a in flushes.nodes(data=True) if a["leaf"]}
    assert leaves and all("flush" in fn for fn in leaves) and "intel_iommu_tlb_sync" not in leaves
    unmaps = cg.build(lazy, cg.Options(probes=("iommu_unmap",)))
    assert 0 < flushes.graph["events"]["flush"] < unmaps.graph["events"]["unmap"]
