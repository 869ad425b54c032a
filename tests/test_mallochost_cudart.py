"""cudaMallocHost by name on the H100 (h100-mallochost-cudart.iot): what it maps, and how."""

from __future__ import annotations

import json

from conftest import TRACES, cli

TRACE = str(TRACES / "h100" / "h100-mallochost-cudart.iot")
MiB = 1 << 20


def test_each_cudamallochost_maps_a_chunk_or_nothing():
    p = cli("calls", TRACE, "--format", "json")
    assert p.returncode == 0, p.stderr
    calls = [c for c in json.loads(p.stdout)["calls"] if c["call"] == "cudaMallocHost"]
    assert [c["size"] for c in calls] == [4096] * 2 + [65536] * 2 + [MiB] * 2 + [16 * MiB] * 2
    # The driver maps 2 MiB chunks and carves small allocations from them:
    # the first 4 KiB maps a chunk, the next four fit in it, the second 1 MiB
    # needs a new chunk, each 16 MiB maps its own.
    assert [c["maps"] for c in calls] == [1, 0, 0, 0, 0, 1, 1, 1]
    assert [c["map_bytes"] for c in calls] == [2 * MiB, 0, 0, 0, 0, 2 * MiB, 16 * MiB, 16 * MiB]


def test_the_path_runs_through_the_driver_to_the_dma_api(tmp_path):
    dot = tmp_path / "path.dot"
    p = cli("callgraph", TRACE, "--from", "cudaMallocHost", "--to", "dma_map*", "-o", str(dot))
    assert p.returncode == 0, p.stderr
    text = dot.read_text()
    for frame in ("cudaMallocHost", "cuMemHostAlloc", "nvidia_unlocked_ioctl", "memdescMapIommu",
                  "osIovaMap", "nv_dma_map_alloc", "dma_map_sg_attrs"):  # fmt: skip
        assert frame in text, frame
    assert "4 maps" in p.stdout and "36 MiB" in p.stdout
