"""The runtime's decode step with small shapes: the split gives the baseline's attention
output, and it really does use the recomputed K/V, not the host's. Eager on CPU; the CUDA
graph path (replays of a captured step) where torch sees a GPU."""

from __future__ import annotations

import json

import pytest
import torch  # the kvsplit extra: scripts/setup.sh installs it; a missing torch fails here

from iommu_trace.kvsplit import runtime
from iommu_trace.kvsplit.shape import ModelShape

from conftest import TRACES, cli, one_line_error

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA graphs need a CUDA device (torch sees none); the eager path is tested on CPU",
)

SHAPE = ModelShape("tiny", hidden=64, heads=4, layers=3, ffn=128, dtype="fp32")


def model(batch=3, context=24, device="cpu"):
    return runtime.build(SHAPE, batch, context, layers_run=3, device=device, seed=1)


def test_split_attention_equals_full_transfer():
    m = model()
    base = runtime.decode_step(m, 0)
    assert len(base) == 3 and base[0].shape == (3, 64)
    for split in (1, 7, 12, 23, 24):
        out = runtime.decode_step(m, split)
        for b, o in zip(base, out, strict=True):
            torch.testing.assert_close(o, b, rtol=1e-5, atol=1e-6)
        assert runtime.compare(m, split) < 1e-5


def test_recomputed_tokens_never_read_the_host_kv():
    m = model()
    base = runtime.decode_step(m, 0)
    for kv in m.kv_host:
        kv[:10] = float("nan")  # what the split must not transfer
    out = runtime.decode_step(m, 10)
    for b, o in zip(base, out, strict=True):
        torch.testing.assert_close(o, b, rtol=1e-5, atol=1e-6)
    # and a split that transfers them does see the poison
    assert torch.isnan(runtime.decode_step(m, 9)[0]).any()


def test_layers_differ_and_attention_depends_on_the_cache():
    m = model()
    a = runtime.decode_step(m, 0)
    assert not torch.allclose(a[0], a[1])
    m.kv_host[0][:, :, 1] *= 2  # other values: another attention output
    assert not torch.allclose(runtime.decode_step(m, 0)[0], a[0])


def test_run_command_on_cpu_checks_every_split(tmp_path):
    out = tmp_path / "res.json"
    p = cli(
        *("kvsplit", "run", "--device", "cpu", "--profile", TRACES / "kvsplit/h200-profile.json"),
        *("--hidden", "64", "--heads", "4", "--ffn", "128", "--dtype", "fp32"),
        *("--batch", "2", "--context", "16,20", "--layers-run", "2", "-o", out),
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert [(c["batch"], c["context"]) for c in res["configs"]] == [(2, 16), (2, 20)]
    for cfg in res["configs"]:
        assert cfg["splits"][-1]["split"] == cfg["context"]
        assert all(
            r["max_abs_diff"] < 1e-5 and r["measured_layer_s"] is None for r in cfg["splits"]
        )


def test_graphs_refuse_a_cpu_model_with_the_reason():
    with pytest.raises(runtime.GraphsUnavailable, match="CUDA graphs need a CUDA device"):
        runtime.capture(model(), 7)


def test_run_command_graphs_on_cpu_is_one_line_and_cpu_runs_eagerly(tmp_path):
    args = ("kvsplit", "run", "--device", "cpu", "--profile", TRACES / "kvsplit/h200-profile.json")
    args += ("--hidden", "64", "--heads", "4", "--ffn", "128", "--dtype", "fp32")
    args += ("--batch", "1", "--context", "8", "--layers-run", "1", "-o", tmp_path / "r.json")
    assert "--graphs needs --device cuda" in one_line_error(cli(*args, "--graphs"))
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["graphs"] is False and res["configs"][0]["graphs"] is False
    assert "(eager)" in p.stdout


@needs_cuda
def test_graph_replay_equals_eager_and_full_transfer():
    m = model(device="cuda")
    base = runtime.outputs(m, 0)
    for split in (0, 1, 7, 12, 23, 24):
        g = runtime.capture(m, split)
        for _ in range(2):  # a replay rewrites the same output buffers
            out = runtime.outputs(m, split, g)
            for b, o in zip(base, out, strict=True):
                torch.testing.assert_close(o, b, rtol=1e-5, atol=1e-6)
        assert runtime.compare(m, split, g) < 1e-5
        assert len(runtime.time_step(m, split, iters=2, warmup=1, graph=g)) == 2
        with pytest.raises(ValueError, match="captured for split"):
            runtime.time_step(m, split + 1, graph=g)


@needs_cuda
def test_graph_replay_reads_the_host_cache_again():
    m = model(device="cuda")
    base = runtime.outputs(m, 0)
    g10, g9 = runtime.capture(m, 10), runtime.capture(m, 9)
    for kv in m.kv_host:
        kv[:10] = float("nan")  # written after capture: only a replay that copies it sees it
    for b, o in zip(base, runtime.outputs(m, 10, g10), strict=True):
        torch.testing.assert_close(o, b, rtol=1e-5, atol=1e-6)
    assert torch.isnan(runtime.outputs(m, 9, g9)[0]).any()
