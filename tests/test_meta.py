"""The typed trace metadata: built from the JSON once, missing parts are None, never KeyError."""

from __future__ import annotations

from pathlib import Path

from iommu_trace.tracefile.meta import (
    Cost,
    Probe,
    TraceMeta,
    missed_lines,
    no_stack_line,
    stack_loss_lines,
    stacks_lost_total,
)
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"


def test_recorded_trace_reads_typed():
    t = load(str(TRACES / "lab" / "dd64k-lazy.iot"))
    m = t.metadata
    assert m.kernel.release == t.meta["kernel"]["release"] and m.kernel.release
    assert m.iommu.mode == t.meta["iommu"]["mode"] == "lazy"
    assert m.counts == t.meta["counts"]
    assert [(p.name, p.group, p.op, p.status, p.target) for p in m.probes] == [
        (p["name"], p["group"], p["op"], p["status"], p["target"] or "") for p in t.meta["probes"]
    ]
    assert set(m.attached) == {p["name"] for p in t.meta["probes"] if p["status"] == "attach"}
    assert m.format == "iommu-trace" and m.version == t.version
    assert m.buffer == t.meta["buffer"] and m.headers.note == t.meta["headers"]["note"]
    assert m.lost == t.meta["lost"] and m.pmu.recorded is ("pmu" in t.meta)


def test_missing_and_odd_shapes():
    m = TraceMeta.from_json({"kernel": "6.1.0-28-amd64", "iommu": None, "follow": "all"})
    assert m.kernel.release == "6.1.0-28-amd64" and m.kernel.cmdline is None
    assert m.iommu.mode is None and m.iommu.groups == [] and m.iommu.group_types == []
    assert m.what == "(all)" and m.workload == {}
    assert TraceMeta.from_json({"command": ["dd", "if=/dev/zero"]}).what == "dd if=/dev/zero"


def test_fields_validate_does_not_check_are_read_tolerantly():
    # cost, pmu, fired and the probes' other keys: absent or of another shape reads as nothing
    m = TraceMeta.from_json(
        {
            "probes": [{"name": "a", "status": "attach", "target": None}, "junk", {"op": "map"}],
            "fired": {"a": 3, "b": "many"},
            "pmu": "yes",
            "cost": {"startup_s": "slow", "recorder_cpu": {"user_s": 1.5}, "bpf": []},
            "lost": -1,
        }
    )
    assert m.probes == [Probe("a", status="attach")] and m.probes[0].target == ""
    assert m.fired == {"a": 3} and m.lost == 0
    assert not m.pmu.recorded and m.pmu.notes == []
    assert m.cost == Cost() and TraceMeta.from_json({"cost": {}}).cost is None
    c = TraceMeta.from_json({"cost": {"recorder_cpu": {"user_s": 1, "sys_s": 0.5}}}).cost
    assert c is not None and c.recorder_cpu_s == 1.5 and c.bpf_run_time_ns is None


def test_a_malformed_cost_is_not_a_crash(tmp_path):
    """info on a trace whose cost object another writer shaped differently: a line, no traceback."""
    from click.testing import CliRunner

    from iommu_trace.cli import cli
    from iommu_trace.tracefile.writer import write_parquet

    t = load(str(TRACES / "lab" / "dd64k-lazy.iot"))
    out = tmp_path / "odd-cost.iot"
    write_parquet(
        str(out),
        t.read(),
        t.stack_rows(),
        {**t.meta, "cost": {"recorder_cpu_running": {"user_s": 1.0}, "bpf": "n/a"}},
    )
    r = CliRunner().invoke(cli, ["info", str(out)])
    assert r.exit_code == 0, r.output
    assert "cost       " in r.output


def test_no_stack_to_walk_is_not_counted_as_lost():
    # a lab trace: unmaps in NVMe interrupts have no user stack (-EFAULT), and 16 kernel
    # stacks of iommu_unmap hashed onto others' buckets (a real loss)
    fixture = Path(__file__).parent.parent / "traces/lab/k612-kprobe-stops-after-rmmod.iot"
    lost = load(str(fixture)).metadata
    assert stacks_lost_total(lost.stacks_lost) == 16
    assert stacks_lost_total(lost.stacks_lost, ("fault",)) == 5 + 159 + 8 + 159 + 3
    assert stack_loss_lines(lost.stacks_lost) == [
        "stacks lost: 16 kernel stacks of iommu_unmap (hash collision)"
    ]
    line = no_stack_line(lost.stacks_lost)
    assert line is not None and "159 user of dma_unmap_sg" in line and "not a loss" in line


def test_missed_lines_name_each_skipped_probe():
    lines = missed_lines({"iotlb_sync": 1234, "dma_map": 0})
    assert len(lines) == 1 and lines[0].startswith("missed: iotlb_sync's BPF program")
    assert "1,234 times" in lines[0] and "neither the trace nor its counts" in lines[0]
