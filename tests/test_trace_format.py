"""Trace format v2 (stack ids, stacks table in the same file) read like v1, and readable
without our code: the join documented in docs/trace-format.md gives callgraph's stacks."""

from __future__ import annotations

import json
import re
from collections import Counter

import duckdb
import pandas as pd
import pytest

from iommu_trace.analysis import callgraph as cg
from iommu_trace.analysis import dma_events
from iommu_trace.recorder_cost import make_big_trace
from iommu_trace.tracefile.reader import load
from iommu_trace.tracefile.writer import write_parquet

from conftest import TRACES, cli

DOC = TRACES.parent / "docs" / "trace-format.md"
V1 = [TRACES / "h100" / "h100-pinned-torch.iot", TRACES / "lab" / "dd64k-strict.iot"]


def _v2(src, tmp_path):
    t = load(str(src))
    assert t.version == 1
    out = tmp_path / src.name
    write_parquet(str(out), t.read(), t.stack_rows(), t.meta)
    return out


def _canon(graph_json: dict):
    nodes = sorted(json.dumps(n, sort_keys=True) for n in graph_json["nodes"])
    edges = sorted(json.dumps(e, sort_keys=True) for e in graph_json["edges"])
    return nodes, edges


@pytest.mark.parametrize("src", V1, ids=lambda p: p.stem)
def test_v1_and_v2_read_alike(src, tmp_path):
    v2 = _v2(src, tmp_path)
    a, b = load(str(src)), load(str(v2))
    assert b.version == 2 and a.num_events == b.num_events > 0
    assert a.table.to_pylist() == b.table.to_pylist()  # stacks as frame lists in both
    for verb in ("report", "calls"):
        pa_, pb = cli(verb, str(src), "--format", "json"), cli(verb, str(v2), "--format", "json")
        assert pa_.returncode == pb.returncode == 0, pa_.stderr + pb.stderr
        ja, jb = json.loads(pa_.stdout), json.loads(pb.stdout)
        for j in (ja, jb):  # the paths differ, nothing else may
            j.pop("trace")
            if isinstance(j.get("iommu_time"), dict):
                j["iommu_time"].pop("trace")
        assert ja == jb


def _documented_join(path) -> str:
    sql = re.search(r"```sql\n(.*?)```", DOC.read_text(), re.S)[1]
    return sql.replace("run.iot", str(path))


def test_documented_join_gives_callgraphs_stacks(tmp_path):
    v2 = _v2(TRACES / "h100" / "h100-pinned-torch.iot", tmp_path)
    rows = duckdb.sql(_documented_join(v2)).df().to_dict("records")
    evs, calls = [], Counter()
    for r in rows:
        r = {k: (None if v is None or (isinstance(v, float) and v != v) else v)
             for k, v in r.items()}  # fmt: skip
        for c in ("kstack", "ustack"):
            r[c] = None if r[c] is None else [str(x) for x in r[c]]
        for c in ("size", "count", "iova"):
            r[c] = None if r[c] is None else int(r[c])
        if dma_events.is_kernel_event(r):
            evs.append(r)
        elif dma_events.is_call(r):
            calls[r["probe"]] += 1
    dma_events.prepare(evs)
    assert sum(1 for e in evs if e["kstack"]) > 1000 and calls
    ours = cg.build_from_events(evs, cg.Options(), calls=calls)
    out = tmp_path / "g.json"
    p = cli("callgraph", str(v2), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert _canon(cg.to_json(ours)) == _canon(json.loads(out.read_text()))
    # pandas, as documented: the same kernel frames per event
    df = pd.read_parquet(v2, dtype_backend="pyarrow")
    events = df[df.record == "event"]
    stacks = df.loc[df.record == "stack", ["stack_id", "frames"]]
    ev = events.merge(stacks.rename(columns={"stack_id": "kstack_id", "frames": "kstack"}),
                      on="kstack_id", how="left")  # fmt: skip
    by_duck = [r["kstack"] for r in rows]
    by_pandas = [None if x is None or x is pd.NA else [str(f) for f in x] for x in ev["kstack"]]
    assert by_pandas == [None if x is None else [str(f) for f in x] for x in by_duck]


def test_big_trace_generator_scales_counts(tmp_path):
    src = TRACES / "lab" / "dd64k-strict.iot"
    n = load(str(src)).num_events
    out = tmp_path / "x3.iot"
    make_big_trace.make(str(src), 3 * n, str(out))
    big, one = load(str(out)), load(str(src))
    assert big.num_events == 3 * n and len(big.stacks) == len(one.stacks)
    assert big.value_counts("probe") == {k: 3 * v for k, v in one.value_counts("probe").items()}
    g1 = cg.build(one).graph
    g3 = cg.build(big).graph
    assert g3["events"] == {k: 3 * v for k, v in g1["events"].items()}
    assert g3["bytes"] == {k: 3 * v for k, v in g1["bytes"].items()}


def test_upgrade_command(tmp_path):
    src = TRACES / "lab" / "dd64k-strict.iot"
    out = tmp_path / "up.iot"
    p = cli("upgrade", str(src), "-o", str(out))
    assert p.returncode == 0, p.stderr
    a, b = load(str(src)), load(str(out))
    assert a.version == 1 and b.version == 2 and b.meta["upgraded_from"] == 1
    assert a.table.to_pylist() == b.table.to_pylist()
    again = cli("upgrade", str(out))
    assert again.returncode == 0 and "already format version 2" in again.stdout
