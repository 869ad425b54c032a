"""The overhead harness's statistics on known inputs, and `record`'s per-copy warning."""

import numpy as np
import pytest

from iommu_trace.recorder_cost import harness
from iommu_trace.recorder_cost.stats import bootstrap_median_ci, pair_slowdowns, slowdown


def test_equal_runs_have_no_slowdown_and_a_point_ci():
    s = slowdown([10.0, 12.0, 11.0, 9.0, 10.5], [10.0, 12.0, 11.0, 9.0, 10.5])
    assert (s.median, s.low, s.high, s.pairs) == (0.0, 0.0, 0.0, 5)


def test_a_constant_ratio_is_found_exactly():
    untraced = [100.0, 120.0, 90.0, 110.0, 105.0]
    s = slowdown(untraced, [u / 1.25 for u in untraced])  # every traced run 20% less work
    assert s.median == pytest.approx(0.25)
    assert s.low == pytest.approx(0.25) and s.high == pytest.approx(0.25)


def test_pairs_are_paired_not_pooled():
    # the machine drifts 2x between pairs; within each pair traced is 10% slower
    untraced = [100.0, 200.0, 100.0, 200.0, 100.0]
    traced = [u / 1.1 for u in untraced]
    assert slowdown(untraced, traced).median == pytest.approx(0.1)


def test_ci_brackets_the_median_and_stays_within_the_pairs():
    rng = np.random.default_rng(1)
    s = rng.normal(0.02, 0.01, 9)
    low, high = bootstrap_median_ci(s)
    assert s.min() <= low <= np.median(s) <= high <= s.max()
    assert bootstrap_median_ci(s) == (low, high)  # seeded: the same every run


def test_one_outlier_moves_the_median_little():
    s = slowdown([100.0] * 5, [100.0, 100.0, 100.0, 100.0, 50.0])
    assert s.median == 0.0 and s.low == 0.0


@pytest.mark.parametrize(
    ("u", "t"), [([], []), ([1.0, 2.0], [1.0]), ([1.0], [0.0]), ([-1.0], [1.0])]
)
def test_bad_inputs_are_refused(u, t):
    with pytest.raises(ValueError):
        pair_slowdowns(u, t)


def _run(wl, ps, rnd, thr, warmup=False, **extra):
    return {"workload": wl, "set": ps, "round": rnd, "warmup": warmup, "throughput": thr, **extra}


def test_summary_pairs_each_traced_run_with_its_rounds_untraced_run_and_drops_warmup():
    cost = {"recorder_cpu_running": {"user_s": 0.2, "sys_s": 0.1}, "startup_s": 3.0}
    runs = [
        _run("w", "untraced", 0, 50.0, warmup=True),
        _run("w", "default", 0, 1.0, warmup=True, events=10, cost=cost),
        *[_run("w", "untraced", r, 100.0 * r) for r in (1, 2, 3)],
        *[
            _run("w", "default", r, 80.0 * r, events=10, events_per_s=5.0, cost=cost)
            for r in (1, 2, 3)
        ],
    ]
    (row,) = harness.summarize(runs)
    assert row["untraced"] == [100.0, 200.0, 300.0]
    assert row["traced"] == [80.0, 160.0, 240.0]
    assert row["slowdown"] == pytest.approx(0.25)
    assert row["recorder_cpu_s"] == pytest.approx(0.3) and row["startup_s"] == 3.0
    assert "| w | default | 3 | 200 " in harness.table({"summary": [row], "workloads": {}})


def test_the_bpf_column_is_kernel_time_per_second_of_trace():
    """kernel.bpf_stats_enabled's run_time_ns over the trace's span; '-' where not on."""
    on = {"bpf": {"run_time_ns": 20_000_000, "run_cnt": 1}}
    runs = [
        *[_run("w", "untraced", r, 100.0) for r in (0, 1, 2)],
        *[
            _run("w", "default", r, 99.0, cost=on, span_s=s)
            for r, s in ((0, 5.0), (1, 4.0), (2, 2.0))
        ],
        *[_run("v", "untraced", r, 100.0) for r in (0, 1)],
        *[_run("v", "default", r, 99.0, cost={"bpf": None}, span_s=5.0) for r in (0, 1)],
    ]
    rows = {r["workload"]: r for r in harness.summarize(runs)}
    assert rows["w"]["bpf_ms_per_s"] == pytest.approx(5.0)  # the median of 4, 5 and 10
    assert rows["v"]["bpf_ms_per_s"] is None
    text = harness.table({"summary": [rows["w"], rows["v"]], "workloads": {}})
    assert "| 5.0 |" in text.splitlines()[2]


def test_attach_mode_pairs_each_set_with_its_own_untraced_block():
    runs = [
        *[_run("w", "untraced", r, 100.0, **{"for": "default"}) for r in (0, 1, 2)],
        *[_run("w", "untraced", r, 200.0, **{"for": "kernel"}) for r in (0, 1, 2)],
        *[_run("w", "default", r, 90.0) for r in (0, 1, 2)],
        *[_run("w", "kernel", r, 200.0) for r in (0, 1, 2)],
    ]
    rows = {r["set"]: r for r in harness.summarize(runs)}
    assert rows["default"]["untraced"] == [100.0] * 3
    assert rows["default"]["slowdown"] == pytest.approx(100 / 90 - 1)
    assert rows["kernel"]["untraced"] == [200.0] * 3 and rows["kernel"]["slowdown"] == 0


def test_the_a_a_row_pairs_two_untraced_blocks_of_a_round():
    runs = [
        *[_run("w", "untraced", r, 100.0, **{"for": "default"}) for r in (0, 1, 2, 3)],
        *[_run("w", "untraced", r, 80.0, **{"for": "kernel"}) for r in (1, 2, 3)],
        _run("w", "untraced", 0, 1.0, warmup=True, **{"for": "kernel"}),
    ]
    (row,) = harness.null_rows(runs)
    assert row["untraced"] == [100.0] * 3  # the warm-up round and the unpaired one left out
    assert row["slowdown"] == pytest.approx(0.25) and "A/A" in row["set"]


def test_a_block_counts_only_the_steps_wholly_inside_it(tmp_path):
    from iommu_trace.recorder_cost import attach

    log = tmp_path / "steps.log"
    # `ready`, then ten 100 ms steps of 5 units, back to back from t = 1 s
    lines = ["ready 42"] + [f"{(10 + i) * 10**8} {(11 + i) * 10**8} 5" for i in range(10)]
    log.write_text("\n".join(lines) + "\n")
    steps = attach.read_steps(log)
    assert len(steps) == 10
    b = attach.block(steps, int(1.25e9), int(1.85e9))  # steps 1.3-1.8 s: five whole ones
    assert (b.steps, b.seconds) == (5, pytest.approx(0.5)) and b.rate == pytest.approx(50.0)
    assert attach.block(steps, int(1.05e9), int(1.35e9)).rate is None  # 2 steps: too few


def test_record_warns_when_per_copy_probes_are_on():
    """The catalog's opt-in copy probes, and only those, make `record` warn with the cost."""
    from iommu_trace.probes import catalog
    from iommu_trace.probes.discover import Resolution
    from iommu_trace.tracer.recorder import Options, Recorder

    probes = {p.name: p for p in catalog.load().probes}
    said: list[str] = []
    rec = Recorder(Options(output="x.iot"), said.append)
    rec._warn_per_copy([Resolution(probes[n], "attach") for n in ("dma_map", "cuMemAlloc")])
    assert said == []
    rec._warn_per_copy([Resolution(probes[n], "attach") for n in ("cudaMemcpy", "cuMemAlloc")])
    (line,) = said
    assert line.startswith("warning: per-copy probes on (cudaMemcpy)") and "4 KiB" in line


def test_each_twin_copy_is_pinned_to_its_own_cpu_list():
    import argparse

    ns = argparse.Namespace(cpus="0-5:6-11")
    assert harness._pinned(ns, 0) == ["taskset", "-c", "0-5"]
    assert harness._pinned(ns, 1) == ["taskset", "-c", "6-11"]
    ns.cpus = "2"  # one list: attach mode's workload, or both copies on it
    assert harness._pinned(ns, 0) == harness._pinned(ns, 1) == ["taskset", "-c", "2"]
    ns.cpus = None
    assert harness._pinned(ns, 0) == []
