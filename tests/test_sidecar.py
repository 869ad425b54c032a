"""The workload sidecar: one schema written, older files (flat FlexGen results) still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iommu_trace.tracefile import sidecar
from iommu_trace.tracefile.reader import load

TRACES = Path(__file__).parent.parent / "traces"


def test_flat_flexgen_file_reads_its_steps():
    # written before the envelope: "workload" is the name "flexgen", the results are top-level
    side = sidecar.read_workload(str(TRACES / "flexgen" / "flexgen.iot"))
    assert side is not None and side.results["workload"] == "flexgen"
    assert side.results["batch"] == 8 and len(side.steps or []) == 32 and side.runs == []


def test_lab_file_reads_its_runs_and_envelope():
    side = sidecar.read_workload(str(TRACES / "bench" / "lab-sweep-strict.iot"))
    assert side is not None and side.envelope["mode"] == "strict"
    assert side.runs and all("t_start_ns" in r for r in side.runs)


def test_written_file_reads_back(tmp_path):
    t = str(tmp_path / "t.iot")
    sidecar.write_workload(sidecar.workload_path(t), {"runs": [{"bs": 4096}]}, mode="lazy")
    side = sidecar.read_workload(t)
    assert side is not None and side.runs == [{"bs": 4096}] and side.envelope["mode"] == "lazy"
    written = json.loads(Path(t + ".workload.json").read_text())
    assert written["workload"] == {"runs": [{"bs": 4096}]}


def test_missing_is_none_corrupt_is_one_error(tmp_path):
    t = str(tmp_path / "t.iot")
    assert sidecar.read_workload(t) is None
    Path(t + ".workload.json").write_text("{not json")
    with pytest.raises(sidecar.SidecarError, match="unreadable"):
        sidecar.read_workload(t)


def test_trace_reads_the_sidecar_once(monkeypatch):
    t = load(str(TRACES / "flexgen" / "flexgen.iot"))
    reads = []
    real = sidecar.read_workload
    monkeypatch.setattr(sidecar, "read_workload", lambda p: reads.append(p) or real(p))
    assert t.workload()["batch"] == 8 and t.workload()["batch"] == 8
    assert len(reads) == 1
