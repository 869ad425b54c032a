"""`iommu-trace export --perfetto`: the timeline as Chrome trace-event JSON.

Checked two ways: against the trace-event format itself (the Chrome "Trace
Event Format" document: phases, required fields, units, nesting), always; and
by loading it into Perfetto's own trace processor (PyPI `perfetto`) where its
trace_processor_shell binary can be had. That package downloads the binary on
first use; a machine that reaches no such server (this project's CI) skips
that test, saying why. TRACE_PROCESSOR_SHELL=/path/to/trace_processor_shell
points it at a binary fetched by other means.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from conftest import TRACES, cli

H100 = TRACES / "h100"
ADHOC = str(H100 / "h100-copies-adhoc.iot")


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    out = tmp_path_factory.mktemp("pf") / "adhoc.json"
    p = cli("export", ADHOC, "--perfetto", str(out))
    assert p.returncode == 0, p.stderr
    assert "open it in https://ui.perfetto.dev" in p.stdout
    return out, json.loads(out.read_text())


def check_trace_event_format(d: dict) -> None:
    """The JSON Object Format of the Trace Event Format, for the phases used here."""
    assert isinstance(d["traceEvents"], list)
    assert d.get("displayTimeUnit", "ms") in ("ms", "ns")
    for e in d["traceEvents"]:
        ph = e["ph"]
        assert ph in ("X", "i", "C", "M"), e
        assert isinstance(e["name"], str) and e["name"]
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if ph != "M":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if ph == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        if ph == "i":
            assert e["s"] in ("g", "p", "t")
        if ph == "C":
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values())
        if ph == "M":
            assert e["name"] in ("process_name", "thread_name") and e["args"]["name"]
        if "args" in e:
            assert isinstance(e["args"], dict)


def check_nesting(d: dict) -> None:
    """Slices on one thread nest: each starts and ends inside the one it starts in."""
    by_thread: dict[tuple, list] = {}
    for e in d["traceEvents"]:
        if e["ph"] in ("X", "i"):
            by_thread.setdefault((e["pid"], e["tid"]), []).append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
        stack: list[float] = []
        for e in evs:
            while stack and stack[-1] < e["ts"]:
                stack.pop()
            end = e["ts"] + e.get("dur", 0)
            assert not stack or end <= stack[-1] + 1e-9, e
            if e["ph"] == "X":
                stack.append(end)


def test_chrome_trace_event_format(doc):
    _, d = doc
    check_trace_event_format(d)
    check_nesting(d)


def test_slices_instants_counters(doc):
    _, d = doc
    ev = d["traceEvents"]
    x = Counter(e["name"] for e in ev if e["ph"] == "X" and e["cat"] != "syscall")
    assert x["cudaHostAlloc"] == 8 and x["cuMemHostAlloc"] == 8
    assert x["cudaMemcpy"] == 28 and x["cuMemcpyHtoD_v2"] == 16 and x["cuMemcpyDtoH_v2"] == 12
    assert sum(1 for e in ev if e["ph"] == "X" and e["name"] == "ioctl") == 890
    inst = [e for e in ev if e["ph"] == "i"]
    assert Counter(e["name"] for e in inst) == {"dma_map": 555, "dma_unmap": 555,
                                                 "dma_map_sg": 21, "dma_unmap_sg": 20}  # fmt: skip
    owned = Counter(e["args"]["cuda call"] for e in inst if e["args"]["cuda call"])
    assert owned == {"cuMemHostAlloc": 4, "cuMemFreeHost": 4, "cuMemHostRegister": 4,
                     "cuMemHostUnregister": 3}  # fmt: skip
    allocs = [e for e in ev if e["ph"] == "X" and e["name"] == "cudaHostAlloc"]
    assert [e["args"].get("maps caused", 0) for e in allocs] == [1, 0, 0, 0, 0, 1, 1, 1]
    assert allocs[-1]["args"]["map bytes caused"] == 16 << 20
    names = {e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"python3", "cuda-EvtHandlr"} <= names
    last = [e for e in ev if e["ph"] == "C"][-1]["args"]
    assert last["maps"] == 576 and last["unmaps"] == 575


def test_timestamps_keep_nanoseconds(doc):
    _, d = doc
    from iommu_trace.tracefile.reader import load

    ns = sorted(r["ts_ns"] for r in load(ADHOC).table.select(["ts_ns", "group"]).to_pylist()
                if r["group"] in ("dma",))  # fmt: skip
    back = sorted(round(e["ts"] * 1000) for e in d["traceEvents"] if e["ph"] == "i")
    assert back == ns


def _trace_processor(path):
    tp_mod = pytest.importorskip("perfetto.trace_processor")
    cfg = tp_mod.TraceProcessorConfig(bin_path=os.environ.get("TRACE_PROCESSOR_SHELL"))
    try:
        return tp_mod.TraceProcessor(trace=str(path), config=cfg)
    except Exception as e:  # noqa: BLE001 - any failure to obtain/start the binary
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        pytest.skip(
            "Perfetto's trace_processor_shell is not available (the perfetto package "
            f"downloads it on first use; set TRACE_PROCESSOR_SHELL): {first[:200]}"
        )


def test_loads_in_perfetto_trace_processor(doc):
    path, _ = doc
    tp = _trace_processor(path)
    try:
        rows = tp.query(
            "select s.name as name, count(*) as n from slice s group by s.name"
        ).as_pandas_dataframe()
        n = dict(zip(rows["name"], rows["n"], strict=True))
        assert n["cudaHostAlloc"] == 8 and n["cuMemHostAlloc"] == 8
        assert n["dma_map_sg"] == 21 and n["ioctl"] == 890
        # cuMemHostAlloc nests in cudaHostAlloc, on the python3 thread
        nested = tp.query(
            "select count(*) as n from slice c join slice p on c.parent_id = p.id "
            "where c.name = 'cuMemHostAlloc' and p.name = 'cudaHostAlloc'"
        ).as_pandas_dataframe()
        assert nested["n"][0] == 8
        threads = tp.query("select name from thread").as_pandas_dataframe()
        assert "cuda-EvtHandlr" in set(threads["name"])
        stats = tp.query(
            "select name, value from stats where severity in ('error', 'data_loss') and value > 0"
        ).as_pandas_dataframe()
        assert stats.empty, stats
    finally:
        tp.close()
