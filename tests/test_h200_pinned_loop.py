"""200 pinned 4 MiB buffers allocated, copied and freed on the H200 (traces/h200/README.md).

Recorded twice on the same machine: through raw tracepoints (the default
where the kernel has BTF) and through the tracefs records
(`--no-raw-tracepoints`), whose dma_unmap_sg records of long lists the kernel
withholds; the second trace must say how many.
"""

from __future__ import annotations

import json

import pyarrow.compute as pc

from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli

RAW = str(TRACES / "h200" / "h200-pinned-loop.iot")
RECORDS = str(TRACES / "h200" / "h200-pinned-loop-records.iot")
MiB = 1 << 20
ROUNDS = 200


def _events(path: str, probe: str) -> list[dict]:
    t = load(path)
    return t.table.filter(pc.equal(t.table["probe"], probe)).to_pylist()


def test_dma_probes_took_raw_tracepoints():
    paths = {p["name"]: p.get("path") for p in load(RAW).meta["probes"]}
    assert paths["dma_map_sg"] == paths["dma_unmap_sg"] == "raw tracepoint"
    assert not load(RAW).meta.get("withheld")


def test_every_map_is_unmapped_and_sized():
    maps, unmaps = _events(RAW, "dma_map_sg"), _events(RAW, "dma_unmap_sg")
    assert len(maps) >= ROUNDS
    assert len(unmaps) == len(maps)
    assert all(m["size"] is not None and m["at_least"] is False for m in maps)
    assert all(u["size"] is not None and u["at_least"] is False for u in unmaps)
    assert sum(m["size"] for m in maps) == sum(u["size"] for u in unmaps)
    # Some lists are long: the record path could not have carried them.
    assert max(m["nents"] for m in maps) >= 1024


def test_each_free_unmaps_what_its_allocation_mapped():
    p = cli("calls", RAW, "--call", "cudaHostAlloc", "--call", "cudaFreeHost", "--format", "json")
    assert p.returncode == 0, p.stderr
    calls = json.loads(p.stdout)["calls"]
    allocs = [c for c in calls if c["call"] == "cudaHostAlloc"]
    frees = [c for c in calls if c["call"] == "cudaFreeHost"]
    assert len(allocs) == len(frees) == ROUNDS
    assert all(c["size"] == 4 * MiB for c in allocs)
    assert [c["map_bytes"] for c in allocs] == [4 * MiB] * ROUNDS
    assert [c["unmap_bytes"] for c in frees] == [4 * MiB] * ROUNDS
    assert not any(c["bytes_lower_bound"] for c in calls)


def test_record_path_loss_is_counted():
    meta = load(RECORDS).meta
    paths = {p["name"]: p.get("path") for p in meta["probes"]}
    assert paths["dma_unmap_sg"] == "tracefs record"
    seen = len(_events(RECORDS, "dma_unmap_sg"))
    fired = meta["fired"]["dma_unmap_sg"]
    assert fired == len(_events(RECORDS, "dma_map_sg"))  # the kernel did unmap them all
    assert meta["withheld"]["dma_unmap_sg"] == fired - seen > 0
    p = cli("info", RECORDS)
    assert p.returncode == 0, p.stderr
    assert "WITHHELD by the kernel" in p.stdout
    assert "withheld: dma_unmap_sg" in p.stdout
