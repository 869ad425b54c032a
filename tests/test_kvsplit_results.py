"""The committed H200 results (traces/kvsplit/): internally consistent, and the predictions
are what the committed profile and the LP give today, in the mode (eager or CUDA graphs)
each was run in. Every results file there is read, so a new run is checked once committed."""

from __future__ import annotations

import json

import pytest

from iommu_trace.kvsplit import profile as P
from iommu_trace.kvsplit import schedule as S
from iommu_trace.kvsplit import sweep
from iommu_trace.kvsplit.shape import shape_from_dict
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli, one_line_error

KV = TRACES / "kvsplit"


def _results() -> dict[str, dict]:
    out = {}
    for path in sorted(KV.glob("*.json")):
        d = json.loads(path.read_text())
        if d.get("format") == sweep.FORMAT:
            out[path.name] = d
    return out


RESULTS = _results()
GRAPHS = {name: d for name, d in RESULTS.items() if d.get("graphs")}


def _graphs(res: dict, cfg: dict) -> bool:
    return cfg.get("graphs", res.get("graphs", False))  # results before graphs ran eagerly


@pytest.fixture(params=sorted(RESULTS), scope="module")
def res(request):
    return RESULTS[request.param]


def test_the_first_sweep_and_the_recording_are_there():
    assert {"h200-results.json", "h200-recorded.json"} <= set(RESULTS)


def _covers_the_grid(res: dict) -> None:
    assert len({c["batch"] for c in res["configs"]}) >= 2
    assert len({c["context"] for c in res["configs"]}) >= 2
    for cfg in res["configs"]:
        splits = [r["split"] for r in cfg["splits"]]
        assert splits == sorted(splits) and splits[0] == 0 and splits[-1] == cfg["context"]
        assert len(splits) >= 11


def test_first_sweep_covers_two_batches_two_contexts_and_the_whole_split_range():
    _covers_the_grid(RESULTS["h200-results.json"])


def test_every_split_predicted_measured_and_equal_to_full_transfer(res):
    assert res["device"].startswith("NVIDIA H200")
    for cfg in res["configs"]:
        splits = [r["split"] for r in cfg["splits"]]
        assert splits == sorted(splits) and splits[0] == 0
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
        c = S.costs(prof, shape, cfg["batch"], cfg["context"], _graphs(res, cfg))
        assert S.solve(c) == cfg["plan"]["split"]
        assert cfg["plan"]["costs"].get("issue1", 0.0) == c.issue1  # older: no floor
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


@pytest.mark.skipif(not GRAPHS, reason="no CUDA-graph results committed (bench/kvsplit_graphs.sh)")
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_sweep(name):
    """A sweep run as CUDA graph replays: the whole grid, every config in graph mode, and
    its profile measured the graph's issue floor, below the eager one it replaces."""
    res = GRAPHS[name]
    _covers_the_grid(res)
    assert all(cfg["graphs"] for cfg in res["configs"])
    assert "CUDA graph" in res["statistic"]
    prof = P.profile_from_dict(res["profile"])
    for recompute in (False, True):
        assert 0 < prof.issue_time(recompute, graphs=True) < prof.issue_time(recompute)
    # the eager run beside it, on the same profile, for the comparison in docs/kvsplit.md
    eager = [d for d in RESULTS.values() if not d.get("graphs") and d["profile"] == res["profile"]]
    assert eager, f"{name}: no eager run on the same profile committed beside it"
    assert {(c["batch"], c["context"]) for d in eager for c in d["configs"]} <= {
        (c["batch"], c["context"]) for c in res["configs"]
    }


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
