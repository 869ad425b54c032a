"""The lab's pieces that need no VM: sizes, the vng command line, workload results."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from iommu_trace.lab import workloads
from iommu_trace.lab.modes import MODES
from iommu_trace.lab.session import workload_argv
from iommu_trace.lab.vm import Tools, VMSpec, _is_static_elf, build_command


def test_parse_size():
    assert workloads.parse_size("4096") == 4096
    assert workloads.parse_size("64k") == 65536
    assert workloads.parse_size("1M") == 1 << 20
    assert workloads.parse_size("2KiB") == 2048
    with pytest.raises(ValueError):
        workloads.parse_size("0")
    with pytest.raises(ValueError):
        workloads.parse_size("lots")


def test_sweep_sizes():
    assert workloads.SWEEP_SIZES[0] == 4096 and workloads.SWEEP_SIZES[-1] == 1 << 20


def test_static_elf():
    assert not _is_static_elf(sys.executable)  # dynamically linked python
    assert not _is_static_elf(__file__)  # not ELF at all


def test_build_command_per_mode():
    tools = Tools("/v/bin/vng", "/usr/bin/qemu-system-x86_64", "/boot/vmlinuz-6.1", "/bin/bb")
    for mode in MODES.values():
        cmd = build_command(tools, VMSpec(mode, "/w/d.img", "/w", "true"))
        assert f"--append={mode.cmdline}" in cmd
        assert {"--disable-kvm", "--force-9p", "--disable-microvm"} <= set(cmd)
        opts = next(c for c in cmd if c.startswith("--qemu-opts="))
        assert "intel-iommu,intremap=on" in opts and "kernel-irqchip=split" in opts
        assert "file=/w/d.img" in opts and "nvme," in opts
        assert cmd[cmd.index("--rwdir") + 1] == "/w"


def test_workload_argv_uses_our_interpreter():
    argv = workload_argv("dd", "/w/r.json", bs="64k", count=10)
    assert argv[0] == sys.executable and argv[1:3] == ["-m", "iommu_trace.lab.workloads"]
    assert argv[-4:] == ["--bs", "64k", "--count", "10"]


@pytest.mark.skipif(shutil.which("dd") is None, reason="needs dd")
def test_workload_dd_result(tmp_path, capsys):
    src = tmp_path / "src"
    src.write_bytes(b"\0" * 8192)
    result = tmp_path / "r.json"
    # no iflag=direct on tmpfs, so read through a plain file via `run`
    rc = workloads.main(["--result", str(result), "run", f"dd if={src} of=/dev/null bs=4k"])
    assert rc == 0
    data = json.loads(result.read_text())
    assert data["workload"] == "run" and data["exit_status"] == 0
    run = data["runs"][0]
    assert run["t_end_ns"] > run["t_start_ns"] and run["elapsed_s"] > 0
    assert workloads.RESULT_TAG in capsys.readouterr().out


def test_dd_bytes_parse():
    err = "2000+0 records in\n2000+0 records out\n131072000 bytes (131 MB, 125 MiB) copied, 1 s\n"
    assert workloads._dd_bytes(err) == 131072000


def test_lab_outputs_go_to_the_sudo_user(tmp_path, monkeypatch):
    """What run_lab does with its trace and sidecar under sudo: a real chown."""
    import os

    from iommu_trace.tracer.launch import give_to_invoker

    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    files = [tmp_path / "lab.iot", tmp_path / "lab.iot.workload.json"]
    for f in files:
        f.write_text("x")
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    give_to_invoker(*map(str, files), str(tmp_path / "absent"))
    assert {(f.stat().st_uid, f.stat().st_gid) for f in files} == {(65534, 65534)}
