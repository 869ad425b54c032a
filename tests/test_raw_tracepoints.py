"""Raw tracepoints on this kernel: chosen where BTF types them, said by `probes -v`, loaded.

The development machines run 6.18 with dma:* tracepoints and BTF but no
device doing DMA-API calls, so this checks the choice and that the kernel's
verifier accepts the programs (the scatter-list walk included); the events
themselves are checked on the GPU machine's trace (test_h200_pinned_loop.py).
"""

from __future__ import annotations

import pytest

from iommu_trace.probes import btf, discover
from iommu_trace.tracefile.reader import load

from conftest import cli, requires_bpf

pytestmark = [
    requires_bpf,
    pytest.mark.skipif(
        btf.running() is None
        or discover.tracepoint_fields("dma:dma_map_sg", discover.tracefs()) is None,
        reason="needs a kernel with BTF and the dma tracepoints (6.12+)",
    ),
]


def test_probes_verbose_says_which_path_and_why():
    p = cli("probes", "-v")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    i = next(k for k, line in enumerate(lines) if " dma_map_sg " in line)
    assert "raw_tracepoint:dma:dma_map_sg" in lines[i]
    assert "path: raw tracepoint: TP_PROTO arguments typed by the kernel's BTF" in lines[i + 1]


def test_record_both_paths(tmp_path):
    raw, rec = tmp_path / "raw.iot", tmp_path / "rec.iot"
    p = cli("record", "-o", str(raw), "--", "true")
    assert p.returncode == 0, p.stderr
    q = cli("record", "--no-raw-tracepoints", "-o", str(rec), "--", "true")
    assert q.returncode == 0, q.stderr
    paths = {p["name"]: (p["path"], p["skipped"]) for p in load(str(raw)).meta["probes"]}
    assert paths["dma_unmap_sg"] == ("raw tracepoint", [])
    assert paths["iommu_map"][0] == "raw tracepoint"
    meta = load(str(rec)).meta
    paths = {p["name"]: (p["path"], p["skipped"]) for p in meta["probes"]}
    path, skipped = paths["dma_unmap_sg"]
    assert path == "tracefs record"
    assert skipped == [
        "raw_tracepoint:dma:dma_unmap_sg: raw tracepoints are off (--no-raw-tracepoints)"
    ]
    # The record path is watched by a raw-tracepoint counter of the same event.
    assert "dma_unmap_sg" in meta["fired"] and meta["withheld"] == {}
