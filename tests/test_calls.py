"""Attribution of DMA events to the CUDA calls that bracket them, and `iommu-trace calls`."""

from __future__ import annotations

import json
import re

import pytest

from iommu_trace.analysis import attribution as at
from iommu_trace.analysis import frames
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli

H100 = TRACES / "h100"
PHASES = json.loads((H100 / "phases.json").read_text())["traces"]
MIB = 1 << 20
ALL = ("h100-pinned-cupy", "h100-pinned-torch", "h100-copies-probed", "h100-copies-adhoc")


@pytest.fixture(scope="module")
def traces():
    return {n: at.attribute(load(str(H100 / f"{n}.iot"))) for n in ALL}


def calls(a: at.Attribution, name: str) -> list[at.Call]:
    return [c for c in a.calls if c.name == name]


def test_each_allocation_owns_its_own_mapping(traces):
    # cuMemHostAlloc maps a 2 MiB chunk for the first 4 KiB and the second 1 MiB
    # allocation, and 16 MiB for each 16 MiB one; the others fit in a chunk.
    for name in ("h100-pinned-cupy", "h100-copies-probed", "h100-copies-adhoc",
                 "h100-pinned-torch"):  # fmt: skip
        a = traces[name]
        allocs = calls(a, "cuMemHostAlloc")
        assert [c.ev["size"] for c in allocs] == [
            4096,
            4096,
            65536,
            65536,
            MIB,
            MIB,
            16 * MIB,
            16 * MIB,
        ] or name.endswith("torch")
        mapped = [(c.ev["size"], [e["size"] for e in c.all_events()]) for c in allocs]
        mapped = [(s, m) for s, m in mapped if m]
        if name.endswith("torch"):  # torch's caching allocator rounds 64 KiB up and reuses
            assert [m for _, m in mapped] == [[2 * MIB], [2 * MIB], [16 * MIB], [16 * MIB]]
            continue
        assert mapped == [(4096, [2 * MIB]), (MIB, [2 * MIB]), (16 * MIB, [16 * MIB]),
                          (16 * MIB, [16 * MIB])], name  # fmt: skip
        for c in allocs:
            for e in c.all_events():
                assert e["probe"] == "dma_map_sg"
                assert c.ts <= e["ts_ns"] <= c.end and e["tid"] == c.ev["tid"]
        # each mapping is owned by exactly one allocation
        owned = [id(e) for c in allocs for e in c.all_events()]
        assert len(owned) == len(set(owned)) == 4


def test_runtime_call_counts_what_its_driver_call_caused(traces):
    a = traces["h100-copies-adhoc"]
    for c in calls(a, "cudaHostAlloc"):
        assert [d.name for d in c.children] == ["cuMemHostAlloc"]
        assert c.counts() == c.children[0].counts()
        assert at.size_of(c) == c.children[0].ev["size"]  # the ad-hoc probe has no size
    assert sum(bool(c.counts()[0]) for c in calls(a, "cudaHostAlloc")) == 4


def test_copies_cause_no_mapping(traces):
    # What the trace shows: no copy (pinned, registered or pageable) maps,
    # unmaps or even makes an ioctl; pinned memory was mapped at allocation,
    # pageable copies use staging buffers mapped at context creation.
    for name in ("h100-copies-probed", "h100-copies-adhoc"):
        a = traces[name]
        copies = [c for c in a.calls if re.match(r"^(cudaMemcpy|cuMemcpy)", c.name)]
        assert len(copies) == (28 if name.endswith("probed") else 56)
        for c in copies:
            assert c.all_events() == [] and c.n_ioctls() == 0, (name, c.name)
        # and no kernel DMA event at all falls in the copy phases
        ph = PHASES[f"{name}.iot"]
        for lo, hi in ((ph["copies-pinned"], ph["free-host"]),
                       (ph["copies-pageable"], ph["managed"])):  # fmt: skip
            assert not [e for e in a.events if lo <= e["ts_ns"] < hi]


def test_free_and_unregister_own_their_unmaps(traces):
    a = traces["h100-pinned-cupy"]
    frees = calls(a, "cuMemFreeHost")
    assert [len(c.events) for c in frees] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [e["size"] for c in frees for e in c.events] == [2 * MIB, 2 * MIB, 16 * MIB, 16 * MIB]
    assert all(e.get("size_inferred") for c in frees for e in c.events)  # from the maps
    unreg = calls(a, "cuMemHostUnregister")
    assert [[e["probe"] for e in c.events] for c in unreg] == [
        ["dma_unmap"],
        ["dma_unmap_sg"],
        ["dma_unmap_sg"],
        [],
    ]


def test_managed_memory_maps_nothing_here(traces):
    for name in ("h100-pinned-cupy", "h100-copies-adhoc"):
        (c,) = calls(traces[name], "cuMemAllocManaged")
        assert c.all_events() == [] and c.ev["size"] == MIB


def test_attribution_agrees_with_the_user_stacks(traces):
    # Where an attributed event's own user stack names a CUDA entry point, it is
    # the innermost bracketing call (cuMemHostRegister is cuMemHostRegister_v2).
    checked = 0
    for a in traces.values():
        for e in a.events:
            owner = a.owner.get(id(e))
            if owner is None or not e["ustack"]:
                continue
            api = [f.fn for f in map(lambda s: frames.parse(s, False), e["ustack"])
                   if frames.is_cuda_api(f)]  # fmt: skip
            assert re.fullmatch(re.escape(owner.name) + r"(_v\d)?", api[0]), (owner.name, api)
            checked += 1
    assert checked == 15 * 3 + 7  # 15 per cupy trace, 7 in torch


def test_unexplained_events_and_their_origin(traces):
    a = traces["h100-pinned-cupy"]
    assert a.n_events == 1151 and a.n_unexplained == 1151 - 15
    # events on threads that made no probed call are grouped, not one dict each
    assert len(a.events) < 1151 and sum(g["n"] for g in a.bulk) == 1151 - len(a.events)
    groups = {(g["comm"], g["origin"]): g for g in at.unexplained_summary(a)}
    ctx = groups[("python3", "cudaSetDevice > cuDevicePrimaryCtxRetain (user stack; not probed)")]
    assert ctx["events"] == {"map": 550}
    assert ctx["probes"] == {"dma_map": 540, "dma_map_sg": 10}
    exit_uvm = groups[("cuda-EvtHandlr", "process exit: uvm_release_entry [nvidia_uvm]")]
    assert exit_uvm["events"] == {"unmap": 530}
    assert sum(sum(g["events"].values()) for g in groups.values()) == 1136


def test_calls_command_text(tmp_path):
    p = cli("calls", str(H100 / "h100-copies-adhoc.iot"))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert re.search(r"\n\s*[\d.]+\s+655\s+cudaHostAlloc\s+16 MiB\s+[\d.]+\s+3\s+1\s+16 MiB", out)
    assert re.search(r"\n\s*[\d.]+\s+655\s+  cuMemHostAlloc\s+16 MiB", out)  # nested, indented
    assert re.search(r"cudaMemcpy\s+28\s+none", out)
    assert re.search(r"cudaHostAlloc\s+8\s+4\s+[\d.]+\s+4\s+36 MiB", out)
    assert (
        "DMA/IOMMU events: 1151; caused by a recorded CUDA call: 15; no call explains: 1136" in out
    )
    assert "process exit: nvidia_close [nvidia]" in out
    assert "≥" in out  # registrations of sg lists longer than the tracepoint keeps


def test_calls_command_json_and_filters():
    p = cli("calls", str(H100 / "h100-pinned-torch.iot"), "--format", "json", "--mapping-only",
            "--flat")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["call"] for r in doc["calls"]] == ["cudaHostAlloc"] * 4 + ["cudaFreeHost"] * 3
    assert [r["map_bytes"] for r in doc["calls"][:4]] == [2 * MIB, 2 * MIB, 16 * MIB, 16 * MIB]
    by = {s["call"]: s for s in doc["by_call"]}
    assert by["cudaHostAlloc"]["calls"] == 8 and by["cudaHostAlloc"]["mapping_calls"] == 4
    assert by["cudaFreeHost"]["calls"] == 7 and by["cudaFreeHost"]["mapping_calls"] == 3
    assert doc["explained"] == 7
