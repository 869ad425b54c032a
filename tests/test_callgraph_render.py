"""`iommu-trace callgraph`: files drawn from the real H100 traces, and its errors."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TRACES, cli, one_line_error

ADHOC = str(TRACES / "h100" / "h100-copies-adhoc.iot")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot not installed")


def dot_labels(text: str) -> list[str]:
    """The function names drawn in a DOT file (first line of each node's label)."""
    return re.findall(r"n\d+ \[label=<(?:<B>)?([^<>]+)", text)


def test_dot_holds_the_path_and_only_it(tmp_path):
    out = tmp_path / "p.dot"
    p = cli("callgraph", ADHOC, "--from", "cudaHostAlloc", "--to", "dma_map_sg_attrs",
            "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "4 maps · 36 MiB (4 of 1151 DMA/IOMMU events)" in p.stdout
    text = out.read_text()
    names = dot_labels(text)
    for fn in ("cudaHostAlloc", "cuMemHostAlloc", "ioctl", "nvidia_unlocked_ioctl", "rm_ioctl",
               "RmCreateOsDescriptor", "memdescMapIommu", "osIovaMap", "nv_dma_map_alloc",
               "nv_dma_map_scatterlist", "dma_map_sg_attrs"):  # fmt: skip
        assert fn in names, fn
    assert "__dma_map_sg_attrs" not in names  # below --to
    assert not [n for n in names if n.startswith("uvm_") or "unmap" in n or n.startswith("cuInit")]
    edges = re.findall(r"(n\d+) -> (n\d+)", text)
    assert len(edges) == len(names) - 1  # one chain
    # the unnamed frames (cudart linked into cupy, stripped libcuda) are dashed edges
    assert "⋯ 2 internal frames" in text and "⋯ 11 internal frames" in text
    assert text.count("style=dashed") == 2
    assert "4 maps · 36 MiB" in text
    assert "CUDA runtime (libcudart)" in text and "nvidia.ko" in text  # the legend
    assert "nvidia_uvm.ko" not in text  # only layers drawn are in the legend
    assert "8 calls" in text  # the probed calls say how often they ran


@needs_dot
@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("pdf", b"%PDF"), ("png", b"\x89PNG")])
def test_svg_pdf_png(tmp_path, ext, magic):
    out = tmp_path / f"p.{ext}"
    p = cli("callgraph", ADHOC, "--from", "cudaHostAlloc", "--from", "cudaFreeHost",
            "--collapse", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 5000
    if ext == "svg":
        svg = data.decode()
        for s in ("cudaHostAlloc", "cudaFreeHost", "osIovaMap", "osIovaUnmap", "dma_unmap_sg",
                  "frames", "IOMMU off"):  # fmt: skip
            assert s in svg, s


def test_runs_as_nodes(tmp_path):
    out = tmp_path / "p.dot"
    p = cli("callgraph", ADHOC, "--from", "cudaHostAlloc", "--collapse", "--runs", "nodes",
            "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "<I>⋯ 11 internal frames</I>" in text and "style=dashed" not in text
    assert "<I>⋯ 12 frames</I>" in text  # nvidia.ko frames between the kept ones


def test_whole_graph_and_json(tmp_path):
    out = tmp_path / "g.json"
    p = cli("callgraph", ADHOC, "-o", str(out))
    assert p.returncode == 0, p.stderr
    g = json.loads(out.read_text())
    fns = {n["fn"] for n in g["nodes"]}
    assert {"cudaHostAlloc", "cuMemHostRegister_v2", "cuDevicePrimaryCtxRetain", "uvm_ioctl",
            "dma_map_phys", "dma_unmap_sg_attrs", "uvm_release_entry"} <= fns  # fmt: skip
    assert g["graph"]["events"] == {"map": 576, "unmap": 575}
    assert all(isinstance(e["events"], dict) for e in g["edges"])


def test_default_output_name(tmp_path):
    src = tmp_path / "run.iot"
    shutil.copy(ADHOC, src)
    p = cli("callgraph", str(src), "--format", "dot", "--from", "cuMemHostAlloc")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "run-callgraph.dot").exists()


def _strip_stacks(src: str, dst) -> None:
    t = pq.read_table(src)
    for col in ("kstack", "ustack"):
        i = t.schema.get_field_index(col)
        t = t.set_column(i, t.schema.field(i), pa.nulls(t.num_rows, t.schema.field(i).type))
    pq.write_table(t, dst, compression="zstd")


def test_trace_without_stacks_is_a_clear_message(tmp_path):
    bare = tmp_path / "bare.iot"
    _strip_stacks(ADHOC, bare)
    out = tmp_path / "p.svg"
    p = cli("callgraph", str(bare), "-o", str(out))
    line = one_line_error(p)
    assert "none of its 1151 DMA/IOMMU events has a kernel or user stack" in line
    assert not out.exists()


def test_unknown_function_names_near_ones(tmp_path):
    p = cli("callgraph", ADHOC, "--from", "cuMemHostAloc", "-o", str(tmp_path / "x.dot"))
    line = one_line_error(p)
    assert "--from cuMemHostAloc: no recorded stack has this frame" in line
    assert "cuMemHostAlloc" in line  # the suggestion


def test_unknown_format_and_bad_trace(tmp_path):
    line = one_line_error(cli("callgraph", ADHOC, "-o", str(tmp_path / "x.jpeg")))
    assert "unknown output format 'jpeg'" in line
    bad = tmp_path / "bad.iot"
    bad.write_bytes(b"not a trace")
    assert "not an iommu-trace file" in one_line_error(cli("callgraph", str(bad)))
