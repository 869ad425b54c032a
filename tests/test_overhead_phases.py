"""`overhead --phases` on the committed FlexGen trace (OPT-1.3b, KV cache on the CPU, H100)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from iommu_trace.analysis import phases
from iommu_trace.cli import cli
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"
F = str(TRACES / "flexgen" / "flexgen.iot")
A = str(TRACES / "bench" / "bench-a.iot")


@pytest.fixture(scope="module")
def split():
    t = load(F)
    wl = phases.load_workload(t)
    return t, wl, phases.split(t.events, t.metadata, wl).set_index("phase")


def test_windows_from_the_example(split):
    _, wl, tab = split
    assert list(tab.index) == ["setup", "prefill", "decode", "teardown"]
    assert wl["batch"] == 8 and len(wl["steps"]) == 32
    assert tab.loc["prefill", "tokens"] == 8 * 512
    assert tab.loc["decode", "tokens"] == 8 * 31 and tab.loc["decode", "steps"] == 31


def test_exact_counts_per_phase(split):
    t, wl, tab = split
    assert tab.loc["setup", "dma_map"] == 574 and tab.loc["setup", "pinned_allocs"] == 4
    assert tab.loc["prefill", "dma_map"] == 0 and tab.loc["prefill", "copies"] == 51
    d = tab.loc["decode"]
    assert d["dma_map"] == 2 and d["dma_unmap"] == 0 and d["pinned_allocs"] == 2
    assert d["pinned_bytes"] == 64 << 20
    assert d["copies"] == 4478 and d["copy_bytes"] == 25840585632
    assert d["h2d_bytes"] == 25744638944  # the KV cache, brought back layer by layer
    assert tab.loc["prefill", "d2h_bytes"] == 805306432  # and stored once after the prefill
    assert d["flush"] is None or d["flush"] != d["flush"]  # no kprobes there: unknown
    assert phases.map_steps(t.events, t.metadata, wl) == [1]


def test_cli_text_and_json():
    r = CliRunner().invoke(cli, ["overhead", "--phases", F])
    assert r.exit_code == 0, r.output
    assert "decode 121.4 token/s" in r.output
    assert "Decode: 2 DMA maps and 2 pinned host allocations for 248 generated tokens" in r.output
    assert "(0.00806 maps per token, in step 1)" in r.output
    doc = json.loads(
        CliRunner().invoke(cli, ["overhead", "--phases", F, "--format", "json"]).output
    )
    assert doc["decode_steps_with_maps"] == [1]
    assert [p["phase"] for p in doc["phases"]] == ["setup", "prefill", "decode", "teardown"]


def test_cli_phase_errors():
    r = CliRunner().invoke(cli, ["overhead", "--phases", A])
    assert r.exit_code == 2 and "no phase windows" in r.output
    r = CliRunner().invoke(cli, ["overhead", "--phases", F, F])
    assert r.exit_code == 2 and "--phases reads one trace" in r.output
