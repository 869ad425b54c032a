"""report and compare on the committed lab traces: the exact figures those traces hold."""

from __future__ import annotations

import csv
import io
import json

import pytest

from iommu_trace.analysis import report as R
from iommu_trace.analysis import side_by_side as C
from iommu_trace.tracefile.reader import load

from conftest import TRACES, cli, one_line_error

LAB = TRACES / "lab"


def lab(mode: str) -> str:
    return str(LAB / f"dd64k-{mode}.iot")


@pytest.fixture(scope="module")
def reports():
    return {m: R.build(load(lab(m))) for m in ("strict", "lazy", "passthrough")}


def test_strict_counts(reports):
    r = reports["strict"]
    assert r["mode"] == "strict"
    c = r["counts"]
    assert (c["dma_map"], c["dma_unmap"], c["iommu_map"], c["iommu_unmap"]) == (306, 306, 312, 306)
    assert (c["flush"], c["flush_strict"], c["flush_queue"], c["qi_submit"]) == (306, 306, 0, 306)
    assert (c["iova_alloc"], c["iova_free"]) == (306, 306)
    assert r["flushes_per_unmap"] == 1.0
    run = r["phases"][1]
    assert run["phase"] == "run 1 bs=65536"
    assert (run["counts"]["flush"], run["counts"]["iommu_unmap"]) == (300, 300)
    assert r["workload"]["bytes"] == 300 * 65536


def test_lazy_counts(reports):
    r = reports["lazy"]
    c = r["counts"]
    assert (c["iommu_unmap"], c["flush"], c["flush_queue"], c["flush_timer"]) == (333, 63, 63, 63)
    assert c["flush_strict"] == 0
    assert (c["iova_alloc"], c["iova_free"]) == (333, 330)  # 3 frees still queued at the end
    run = r["phases"][1]
    assert (run["counts"]["flush"], run["counts"]["iommu_unmap"]) == (31, 301)
    assert r["flushes_per_unmap"] == pytest.approx(63 / 333)


def test_passthrough_counts(reports):
    c = reports["passthrough"]["counts"]
    assert (c["dma_map"], c["dma_unmap"]) == (304, 304)
    assert c["iommu_map"] == c["flush"] == c["iova_alloc"] == 0
    assert reports["passthrough"]["flushes_per_unmap"] is None


def test_size_histogram_and_devices(reports):
    r = reports["strict"]
    hist = {(h["layer"], h["size_le"]): h["count"] for h in r["size_histogram"]}
    assert sum(v for (layer, _), v in hist.items() if layer == "iommu_map") == 312
    nvme = next(d for d in r["devices"] if d["dev"] == "0000:00:0a.0")
    assert (nvme["maps"], nvme["unmaps"]) == (300, 300)
    assert sum(t["flush"] for t in r["timeline"]) == 306


def test_report_cli_formats():
    text = cli("report", lab("strict"))
    assert text.returncode == 0, text.stderr
    assert "IOTLB flushes per unmap: 1.00" in text.stdout
    j = json.loads(cli("report", "--format", "json", lab("lazy")).stdout)
    assert j["counts"]["flush"] == 63
    rows = list(csv.DictReader(io.StringIO(cli("report", "--format", "csv", lab("lazy")).stdout)))
    assert next(r for r in rows if r["key"] == "flush")["count"] == "63"


def test_report_on_a_trace_without_an_iommu():
    r = R.build(load(str(TRACES / "h100" / "h100-pinned-cupy.iot")))
    assert r["mode"] == "off"
    assert r["counts"]["flush"] is None  # no flush probe could attach there
    assert r["counts"]["dma_map"] > 0


def test_compare_side_by_side(tmp_path):
    c = C.build([load(lab("lazy")), load(lab("strict")), load(lab("passthrough"))])
    lazy, strict, pt = c["traces"]
    assert (lazy["counts"]["flush"], strict["counts"]["flush"], pt["counts"]["flush"]) == (
        63,
        306,
        0,
    )
    assert lazy["workload_flush_rate_per_s"] == pytest.approx(31 / 1.01349989)
    assert strict["workload_flush_rate_per_s"] == pytest.approx(300 / 0.35461825)
    assert strict["unmap_latency_us"] is not None  # dma_unmap_sg is timed on 6.1
    out = tmp_path / "cmp.svg"
    p = cli("compare", lab("lazy"), lab("strict"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "IOTLB flushes / s, workload runs" in p.stdout
    svg = out.read_text()
    assert svg.startswith("<?xml") and "dd64k-strict.iot" in svg  # the figure names its source
    line = next(x for x in p.stdout.splitlines() if x.startswith("IOTLB flushes "))
    assert line.split()[-1] == f"{306 / 63:.2f}"  # strict/lazy ratio


def test_compare_needs_two_traces():
    assert "two or more" in one_line_error(cli("compare", lab("strict")))


def test_compare_rejects_unknown_plot_format(tmp_path):
    p = cli("compare", lab("lazy"), lab("strict"), "-o", str(tmp_path / "x.bmp"))
    assert "not supported" in one_line_error(p)


def test_report_phases_on_the_flexgen_trace():
    p = cli("report", "--phases", "--format", "json", str(TRACES / "flexgen" / "flexgen.iot"))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    decode = next(r for r in doc["phases"] if r["phase"] == "decode")
    assert decode["steps"] == 31
    assert decode["dma_map"] == 2  # two pinned buffers in the first decode step, none after
    assert doc["decode_steps_with_maps"] == [1]


def test_report_phases_needs_phase_windows():
    assert "no phase windows" in one_line_error(cli("report", "--phases", lab("strict")))


@pytest.mark.parametrize(
    "args",
    [
        ("compare", "LAZY", "STRICT", "-o", "OUT"),
        ("callgraph", str(TRACES / "h100" / "h100-pinned-cupy.iot"), "-o", "OUT"),
    ],
)
def test_unwritable_output_is_one_line(tmp_path, args):
    out = str(tmp_path / "missing" / "x.svg")
    subst = {"LAZY": lab("lazy"), "STRICT": lab("strict"), "OUT": out}
    line = one_line_error(cli(*[subst.get(a, a) for a in args]))
    assert out in line and "No such file or directory" in line
