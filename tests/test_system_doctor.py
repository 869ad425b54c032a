"""`doctor` on saved real machine states, and on this machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from iommu_trace.cli import cli
from iommu_trace.system import doctor
from iommu_trace.system.fsview import FsView

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
FIRECRACKER = str(FIXTURES / "firecracker")


@pytest.fixture(scope="module")
def fc() -> dict:
    return doctor.diagnose(FIRECRACKER)


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_firecracker_bpf_is_usable_but_kprobes_are_not(fc):
    assert fc["kernel"] == "6.18.44-fc-v669" and fc["root"] is True and fc["virtual"] is True
    assert fc["ready"] == "partial"  # BPF works; kprobes are compiled out
    for name in ("privileges", "tracefs", "bcc", "kernel config", "ringbuf", "btf"):
        assert _check(fc, name)["status"] == "ok", name
    kp = _check(fc, "kprobes")
    assert kp["status"] == "fail" and "CONFIG_KPROBES" in kp["summary"]
    assert _check(fc, "uprobes")["status"] == "ok"
    dma = _check(fc, "tracepoints dma:*")
    assert dma["status"] == "ok" and "dma_map_phys" in dma["detail"][0]
    assert "map" in _check(fc, "tracepoints iommu:*")["detail"][0]


def test_firecracker_headers_mismatch_is_reported(fc):
    h = _check(fc, "kernel headers")
    assert h["status"] == "warn"
    assert "/usr/src/linux-headers-6.1.0-56-amd64" in h["summary"]
    assert any("headers are for 6.1.0-56-amd64 but the kernel is 6.18.44" in d for d in h["detail"])
    # A custom kernel has no Debian headers package to recommend.
    assert not any(p["package"].startswith("linux-headers") for p in fc["install"])


def test_firecracker_iommu_and_gpu(fc):
    mode = _check(fc, "mode")
    assert mode["summary"].startswith("off: no IOMMU")
    assert any("lazy invalidation" in d for d in mode["detail"])
    assert fc["groups"] == []
    assert _check(fc, "gpus")["status"] == "info"
    assert fc["gpu"] == {
        "gpus": [],
        "nvidia": {"version": None, "version_text": None, "modules": []},
        "rdma": [],
    }
    # AMD CPU, no IOMMU in this VM: AMD parameters, with the VM caveat.
    assert fc["boot_params"]["vendor"] == "amd"
    assert fc["boot_params"]["params"]["amd"]["passthrough"] == "iommu=pt"
    assert "VM without a virtual IOMMU" in fc["boot_params"]["note"]


def test_report_is_json_and_text(fc):
    json.dumps(fc)
    text = doctor.render_text(fc)
    for heading in (
        "BPF",
        "Kernel headers",
        "Probe types",
        "IOMMU",
        "GPU",
        "Choosing a mode",
        "Boot parameters",
        "Check after reboot",
    ):
        assert f"\n{heading}\n" in text
    assert "FAIL  kprobes" in text


def test_cli_doctor_replay_matches_library(fc):
    r = CliRunner().invoke(cli, ["doctor", "--root", FIRECRACKER, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == json.loads(json.dumps(fc))


def test_doctor_on_this_machine_save_and_replay(tmp_path):
    view = FsView("/", record=True)
    live = doctor.diagnose("/", view=view, mount=False)
    view.save(str(tmp_path))
    assert doctor.diagnose(str(tmp_path)) == live
    assert live["root"] == (os.geteuid() == 0)


def test_empty_root_degrades_without_errors(tmp_path):
    rep = doctor.diagnose(str(tmp_path))  # nothing readable: every check says so
    assert rep["kernel"] is None
    assert _check(rep, "kernel config")["status"] == "unknown"
    assert _check(rep, "gpus")["status"] == "unknown"
    doctor.render_text(rep)


def test_h100_gpu_driver_and_missing_bcc():
    rep = doctor.diagnose(str(FIXTURES / "h100-firecracker"))
    gpus = _check(rep, "gpus")
    assert gpus["status"] == "ok"
    assert gpus["detail"] == [
        "gpu0: 0000:00:06.0 NVIDIA H100 80GB HBM3, driver nvidia, link x16 @ 32.0 GT/s"
    ]
    assert rep["gpu"]["nvidia"]["version"] == "580.159.04"
    assert rep["gpu"]["nvidia"]["modules"] == ["nvidia", "nvidia_uvm"]
    assert _check(rep, "bcc")["status"] == "fail"
    assert _check(rep, "tracefs")["status"] == "warn"  # root: the recorder mounts it
    assert rep["ready"] == "no"
    required = [p["package"] for p in rep["install"] if p["needed"] == "required"]
    assert required == ["python3-bpfcc", "linux-headers-amd64"]
    assert rep["boot_params"]["vendor"] == "intel"


@pytest.mark.parametrize(
    "fixture,mode,group_type",
    [
        ("lab-strict", "strict", "DMA"),
        ("lab-lazy", "lazy", "DMA-FQ"),
        ("lab-passthrough", "passthrough", "identity"),
    ],
)
def test_lab_modes(fixture, mode, group_type):
    if not (FIXTURES / fixture).is_dir():
        pytest.skip(f"{fixture} not saved yet")
    rep = doctor.diagnose(str(FIXTURES / fixture))
    assert rep["iommu"]["mode"] == mode and rep["iommu"]["vendor"] == "intel"
    assert {g["type"] for g in rep["groups"]} == {group_type}
    assert _check(rep, "mode")["summary"].startswith(f"{mode} (intel): ")
    assert _check(rep, "kprobes")["status"] == "ok"  # the Debian kernel has kprobes
    assert rep["ready"] == "yes"
    nvme = next(g for g in rep["groups"] if any(d["attached"] == ["nvme1n1"] for d in g["devices"]))
    assert [d["kind"] for d in nvme["devices"]] == ["switch-downstream", "nvme"]
    text = doctor.render_text(rep)
    assert f"{group_type}: " in text and "other groups (bridges, chipset, virtio)" in text


# -- doctor --with: traces the lab recorded in strict and lazy mode (dd, 200 x 64 KiB)

STRICT_TRACE = str(FIXTURES / "traces" / "lab-strict-dd64k.iot")
LAZY_TRACE = str(FIXTURES / "traces" / "lab-lazy-dd64k.iot")


def test_with_traces_states_their_modes_and_flushes():
    from iommu_trace.analysis.recorded_iommu import compare

    res = compare([STRICT_TRACE, LAZY_TRACE], here={"mode": "off"})
    strict, lazy = res["traces"]
    assert (strict["mode"], strict["group_types"]) == ("strict", ["DMA"])
    assert (lazy["mode"], lazy["group_types"]) == ("lazy", ["DMA-FQ"])
    # strict: one synchronous flush per unmap; lazy: batched flush-queue drains
    assert strict["counts"]["flush_strict"] == strict["counts"]["iommu_unmap"] > 0
    assert strict["flush_per_unmap"] == 1.0 and strict["counts"]["flush_queue"] == 0
    assert lazy["counts"]["flush_strict"] == 0 and lazy["counts"]["flush_queue"] > 0
    assert lazy["flush_per_unmap"] < 1
    diffs = "\n".join(res["differences"])
    assert "IOMMU modes differ" in diffs and "iommu.strict=1" in diffs
    assert "recorded under strict; this machine is off" in diffs


def test_cli_doctor_with_traces():
    r = CliRunner().invoke(
        cli, ["doctor", "--root", FIRECRACKER, "--with", STRICT_TRACE, "--with", LAZY_TRACE]
    )
    assert r.exit_code == 0, r.output
    assert "IOTLB flushes per unmap: 1.0" in r.output
    r = CliRunner().invoke(
        cli, ["doctor", "--root", FIRECRACKER, "--format", "json", "--with", LAZY_TRACE]
    )
    assert json.loads(r.output)["traces"]["traces"][0]["mode"] == "lazy"


def test_cli_doctor_with_a_non_trace_is_one_line(tmp_path):
    bad = tmp_path / "x.iot"
    bad.write_text("not a trace")
    r = CliRunner().invoke(cli, ["doctor", "--root", FIRECRACKER, "--with", str(bad)])
    assert r.exit_code == 2
    assert (
        r.output.strip() == f"iommu-trace: cannot compare traces: {bad}: not an iommu-trace "
        "file (unknown format)"
    )
