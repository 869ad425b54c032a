"""The committed H200 results (traces/kvsplit/): internally consistent, and the predictions
are what the committed profile and the LP give today."""

from __future__ import annotations

import json

import pytest

from iommu_trace.kvsplit import profile as P
from iommu_trace.kvsplit import schedule as S
from iommu_trace.kvsplit.shape import shape_from_dict
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli, one_line_error

KV = TRACES / "kvsplit"


@pytest.fixture(scope="module")
def res():
    return json.loads((KV / "h200-results.json").read_text())


def test_covers_two_batches_two_contexts_and_the_whole_split_range(res):
    assert res["device"].startswith("NVIDIA H200")
    assert len({c["batch"] for c in res["configs"]}) >= 2
    assert len({c["context"] for c in res["configs"]}) >= 2
    for cfg in res["configs"]:
        splits = [r["split"] for r in cfg["splits"]]
        assert splits == sorted(splits) and splits[0] == 0 and splits[-1] == cfg["context"]
        assert len(splits) >= 11
        for r in cfg["splits"]:  # predicted and measured for each split
            assert r["predicted_layer_s"] > 0 and r["measured_layer_s"] > 0
            assert len(r["measured_layer_s_all"]) == res["iters"]
            assert min(r["measured_layer_s_all"]) <= r["measured_layer_s"]
            assert r["measured_layer_s"] <= max(r["measured_layer_s_all"])
            assert r["max_abs_diff"] < 1e-2  # fp16 attention output vs full transfer


def test_predictions_are_the_lp_on_the_committed_profile(res):
    prof = P.profile_from_dict(res["profile"])
    shape = shape_from_dict(res["shape"])
    for cfg in res["configs"]:
        c = S.costs(prof, shape, cfg["batch"], cfg["context"])
        assert S.solve(c) == cfg["plan"]["split"]
        for r in cfg["splits"]:
            assert S.predict(c, r["split"]) == pytest.approx(r["predicted_layer_s"], rel=1e-9)


def test_chosen_split_figures(res):
    for cfg in res["configs"]:
        ch, by = cfg["chosen"], {r["split"]: r for r in cfg["splits"]}
        row, base = by[ch["split"]], by[0]
        assert ch["measured_layer_s"] == row["measured_layer_s"]
        assert ch["error"] == pytest.approx(row["measured_layer_s"] / row["predicted_layer_s"] - 1)
        assert ch["measured_gain"] == pytest.approx(
            1 - row["measured_layer_s"] / base["measured_layer_s"]
        )
        assert ch["predicted_gain"] == pytest.approx(
            1 - row["predicted_layer_s"] / base["predicted_layer_s"]
        )
        best = min(cfg["splits"], key=lambda r: r["measured_layer_s"])
        assert cfg["best_measured_split"] == best["split"]


def test_recorded_run_shows_pinned_maps_and_unmapped_copies():
    t = load(str(KV / "h200-kvsplit-record.iot"))
    counts = t.events["probe"].value_counts()
    assert counts["cudaHostAlloc"] >= 1 and counts["dma_map_sg"] >= 1
    copies = t.events[t.events["probe"] == "cudaMemcpyAsync"]
    assert len(copies) > 10


def test_plan_command_on_the_committed_profile(tmp_path):
    out = tmp_path / "plan.json"
    prof = str(KV / "h200-profile.json")
    p = cli("kvsplit", "plan", "--profile", prof, "--batch", "8", "--context", "4096", "-o", out)
    assert p.returncode == 0, p.stderr
    assert "split: recompute 3167 of 4096 tokens (77%)" in p.stdout
    plan = json.loads(out.read_text())
    assert plan["split"] == 3167 and plan["gain"] > 0.3
    strict = cli("kvsplit", "plan", "--profile", prof, "--map-cost-us", "72", "-o", out)
    assert json.loads(out.read_text())["split"] > plan["split"], strict.stderr


def test_bad_profile_is_one_line(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"format": "something else"}')
    assert "not a kvsplit profile" in one_line_error(cli("kvsplit", "plan", "--profile", bad))
    bad.write_text("{trunc")
    assert str(bad) in one_line_error(cli("kvsplit", "plan", "--profile", bad))
    assert "Examples:" in cli("kvsplit", "run", "--help").stdout
