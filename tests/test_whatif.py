"""whatif on committed traces: predicted from one mode, compared with the recorded others."""

from __future__ import annotations

import json

import pytest

from iommu_trace.analysis import costs as C
from iommu_trace.analysis import events as E
from iommu_trace.analysis import iommu_time as it
from iommu_trace.analysis import whatif as W
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli, one_line_error

LAB = TRACES / "lab"
RUN = "run 1 bs=65536"


def whatif(path, mode, *args):
    p = cli("whatif", str(path), "--mode", mode, "--format", "json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def recorded_flushes(mode: str) -> int:
    t = load(str(LAB / f"dd64k-timed-{mode}.iot"))
    return E.counts(t)["flush"]


def phase(doc, name):
    return next(p for p in doc["phases"] if p["name"] == name)


def test_strict_predicted_from_passthrough():
    doc = whatif(LAB / "dd64k-timed-passthrough.iot", "strict")
    assert set(doc) >= {"mode", "phases", "total"} and doc["mode"] == "strict"
    for p in doc["phases"] + [doc["total"]]:
        assert set(p) >= {"name", "unmaps", "flushes", "iova_allocs", "t_iommu_s"}
    got, want = doc["total"]["flushes"], recorded_flushes("strict")
    assert abs(got - want) <= 0.05 * want, (got, want)
    assert phase(doc, RUN)["flushes"] == phase(doc, RUN)["unmaps"] == 300
    # the strict run's measured T_IOMMU inside the predicted range
    measured = it.build(load(str(LAB / "dd64k-timed-strict.iot")))
    run_s = sum(r.t_iommu.total_s for r in measured.ops if r.phase == RUN)
    lo, hi = phase(doc, RUN)["t_iommu_s"]
    assert lo <= run_s <= hi, (lo, run_s, hi)


def test_lazy_flush_queue_model_on_its_own_timeline():
    doc = whatif(LAB / "dd64k-timed-lazy.iot", "lazy")
    run = phase(doc, RUN)
    lo, hi = run["flushes_range"]
    t = load(str(LAB / "dd64k-timed-lazy.iot"))
    ev = t.events
    win = E.workload_runs(t)[0]
    inside = (ev["ts_ns"] >= win["t_start_ns"]) & (ev["ts_ns"] < win["t_end_ns"])
    want = int((inside & (ev["probe"] == "fq_flush_timeout")).sum())
    assert lo <= want <= hi and abs(run["flushes"] - want) <= 0.1 * want, (run, want)
    assert run["flushes_queue_full"] == 0  # 300 unmaps over 2 CPUs never fill a 256 queue
    measured = it.build(t)
    total = sum(r.t_iommu.total_s for r in measured.ops if r.phase == RUN)
    total += sum(
        f.dur.total_s for f in measured.flushes if f.probe == "t_fq_timer" and f.phase == RUN
    )
    assert run["t_iommu_s"][0] <= total <= run["t_iommu_s"][1]


def test_lazy_from_passthrough_undercounts_the_timer():
    # passthrough's run is 3x shorter, so the timer fires fewer times on its timeline:
    # the model says what the timeline it is given implies, no more (docs/overhead.md)
    doc = whatif(LAB / "dd64k-timed-passthrough.iot", "lazy")
    assert 0 < phase(doc, RUN)["flushes"] < recorded_flushes("lazy")


def test_queue_full_flushes():
    # 1000 unmaps on one CPU in 1 ms: the timer cannot fire, the 256-entry queue fills
    import numpy as np

    ts = np.arange(1000) * 1000
    timer, full = W.flush_queue(ts, np.zeros(1000, int), np.array(["d"] * 1000), 10**7, 256)
    assert len(full) == 3 and len(timer) == 1


def test_passthrough_and_gpu_trace():
    doc = whatif(LAB / "dd64k-timed-strict.iot", "passthrough")
    assert doc["total"]["flushes"] == 0 and doc["total"]["t_iommu_s"] == [0.0, 0.0]
    assert doc["notes"]  # the strict timeline already holds strict's cost
    gpu = whatif(TRACES / "flexgen" / "flexgen.iot", "strict")
    assert (
        gpu["total"]["unmaps"] > 0 and gpu["total"]["t_iommu_s"][1] > gpu["total"]["t_iommu_s"][0]
    )


def test_cost_table_round_trip(tmp_path):
    path = tmp_path / "costs.json"
    strict = load(str(LAB / "dd64k-timed-strict.iot"))
    C.merge(str(path), "strict", C.measure(strict, "strict"), "s.iot")
    table = C.load(str(path))
    assert table.modes["strict"].unmap.n == 300 and "lazy" not in table.modes
    with pytest.raises(C.CostsError, match="no lazy costs"):
        table.mode("lazy")
    with pytest.raises(C.CostsError, match="recorded without IOMMU timing probes"):
        C.measure(load(str(LAB / "dd64k-strict.iot")), "strict")


@pytest.mark.parametrize(
    "text,msg",
    [("{", "not JSON"), ('{"format": "x"}', "not an iommu-trace cost table"),
     ('{"format": "iommu-trace-costs", "modes": {"strict": {"map": {"p10": 2, "median": 1, '
      '"p90": 3}, "unmap": {}}}}', "p10 <= median <= p90")],
)  # fmt: skip
def test_bad_cost_table_is_one_line(tmp_path, text, msg):
    bad = tmp_path / "c.json"
    bad.write_text(text)
    p = cli(
        "whatif", str(LAB / "dd64k-timed-passthrough.iot"), "--mode", "strict", "--costs", str(bad)
    )
    assert msg in one_line_error(p)
