"""Every committed trace, through every reader verb; and none holds a raw address."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fuzz_traces import VERBS, nonsense

from iommu_trace.cli import cli
from iommu_trace.tracer.addresses import raw_address_columns, raw_addresses_in

ROOT = Path(__file__).resolve().parent.parent
TRACES = sorted((ROOT / "traces").rglob("*.iot"))
EVERY_TRACE = sorted(
    p for p in ROOT.rglob("*.iot") if ".venv" not in p.parts and ".wt" not in p.parts
)
SIDECARS = sorted(p for p in ROOT.rglob("*.workload.json") if ".venv" not in p.parts)
# overhead needs the workload's own results: only the benchmark and lab traces have them
NO_RESULTS = "no benchmark results beside it"


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reader_verb_reads_it(trace, tmp_path):
    runner = CliRunner()
    for verb in VERBS:
        argv = [a.format(t=trace, o=tmp_path / "out") for a in verb]
        res = runner.invoke(cli, argv)
        assert res.exception is None or isinstance(res.exception, SystemExit), (
            verb,
            res.exception,
        )
        if verb[0] == "overhead" and res.exit_code == 2 and NO_RESULTS in res.stderr:
            continue
        if verb[0] == "overhead" and "use `iommu-trace overhead --phases`" in res.stderr:
            res = runner.invoke(cli, [*argv, "--phases"])  # a FlexGen run
        assert res.exit_code == 0, (verb, res.stderr[-500:])
        assert nonsense(res.stdout, "json" in verb) is None, (verb, res.stdout[-500:])
    assert len(TRACES) >= 14


@pytest.mark.parametrize("trace", EVERY_TRACE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_raw_address_in_committed_trace(trace):
    pf = pq.ParquetFile(trace) if trace.read_bytes()[:4] == b"PAR1" else None
    if pf is None:  # a journal fixture: its metadata and events through the reader
        from iommu_trace.tracefile import journal

        data = trace.read_bytes()
        if not data.startswith(journal.MAGIC):
            pytest.skip("an unframed journal fixture (damaged on purpose)")
        j = journal.read(data)
        meta, table = json.loads(j.schema.metadata[b"iommu_trace"]), j.schema.empty_table()
    else:
        meta = json.loads(pf.schema_arrow.metadata[b"iommu_trace"])
        table = pf.read() if {"ts_ns", "probe"} <= set(pf.schema_arrow.names) else None
    assert meta.get("addresses", "pseudonymized") != "raw"
    assert raw_addresses_in(meta) == []
    # The fuzz corpus holds slices of committed traces: a slice can start at region 5
    # with regions 1-4 outside it, so the region-count test only fits whole traces.
    if table is not None and "fuzz" not in trace.parts:
        assert raw_address_columns(table, meta) == []


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_raw_address_in_sidecar(sidecar):
    assert raw_addresses_in(json.loads(sidecar.read_text())) == []
