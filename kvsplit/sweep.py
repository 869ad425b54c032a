"""Predicted vs measured decode-step time over splits, for several (batch, context):
the measurements behind docs/kvsplit.md. Results are written after every configuration,
so a run cut short keeps what it measured."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

from . import schedule
from .profile import Profile
from .shape import ModelShape

FORMAT = "iommu-trace.kvsplit.results/1"


def measure_config(
    shape: ModelShape,
    prof: Profile,
    batch: int,
    context: int,
    percents: list[int],
    layers_run: int,
    iters: int,
    device: str = "cuda",
    graphs: bool = False,
) -> dict:
    """One (batch, context): every split timed eagerly or, with `graphs`, as a CUDA graph
    replay (captured per split), and checked against the eager baseline's output."""
    from . import runtime

    c = schedule.costs(prof, shape, batch, context, graphs)
    p = schedule.plan(c, shape.layers)
    splits = sorted(set(schedule.split_grid(context, percents)) | {p.split})
    m = runtime.build(shape, batch, context, layers_run, device)
    rows: list[dict[str, Any]] = []
    for s in splits:
        g = runtime.capture(m, s) if graphs else None
        if device == "cuda":
            times = [t / layers_run for t in runtime.time_step(m, s, iters, graph=g)]
        else:
            times = []
        rows.append(
            {
                "split": s,
                "fraction": s / context,
                "predicted_layer_s": schedule.predict(c, s),
                "measured_layer_s": statistics.median(times) if times else None,
                "measured_layer_s_all": times,
                # graphs: the replay's and the eager split's output vs the eager baseline
                "max_abs_diff": runtime.compare(m, s, g),
            }
        )
        del g  # its memory pool with it
    del m
    by = {r["split"]: r for r in rows}
    chosen, base = by[p.split], by[0]
    out: dict[str, Any] = {
        "batch": batch,
        "context": context,
        "graphs": graphs,
        "plan": p.to_dict(),
        "splits": rows,
    }
    if chosen["measured_layer_s"] is not None:
        out["chosen"] = {
            "split": p.split,
            "predicted_layer_s": chosen["predicted_layer_s"],
            "measured_layer_s": chosen["measured_layer_s"],
            "error": chosen["measured_layer_s"] / chosen["predicted_layer_s"] - 1.0,
            "measured_gain": 1.0 - chosen["measured_layer_s"] / base["measured_layer_s"],
            "predicted_gain": p.gain,
        }
        best = min(rows, key=lambda r: r["measured_layer_s"])
        out["best_measured_split"] = best["split"]
    return out


def run(
    shape: ModelShape,
    prof: Profile,
    configs: list[tuple[int, int]],
    percents: list[int],
    layers_run: int,
    iters: int,
    out_path: str | None,
    device: str = "cuda",
    progress: Callable[[dict], None] | None = None,
    graphs: bool = False,
) -> dict:
    res: dict[str, Any] = {
        "format": FORMAT,
        "device": prof.device,
        "shape": shape.to_dict(),
        "layers_run": layers_run,
        "iters": iters,
        "graphs": graphs,
        "statistic": "median of per-step CUDA-event times / layers_run"
        + (", one CUDA graph replay per step" if graphs else ", issued eagerly"),
        "profile": prof.to_dict(),
        "configs": [],
    }
    for b, n in configs:
        res["configs"].append(
            measure_config(shape, prof, b, n, percents, layers_run, iters, device, graphs)
        )
        if progress:
            progress(res["configs"][-1])
        if out_path:
            with open(out_path, "w") as f:
                json.dump(res, f, indent=1)
    return res
