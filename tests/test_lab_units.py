"""The lab's pieces that need no VM: sizes, the vng command line, workload results."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from iommu_trace.errors import UserError
from iommu_trace.lab import kernels, workloads
from iommu_trace.lab.iommus import IOMMUS
from iommu_trace.lab.modes import MODES
from iommu_trace.lab.session import _workload_line, workload_argv
from iommu_trace.lab.vm import GuestResult, Tools, VMSpec, _is_static_elf, build_command


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
        cmd = build_command(tools, VMSpec(mode, IOMMUS["intel"], "/w/d.img", "/w", "true"))
        assert f"--append=intel_iommu=on {mode.option}" in cmd
        assert {"--disable-kvm", "--force-9p", "--disable-microvm"} <= set(cmd)
        opts = next(c for c in cmd if c.startswith("--qemu-opts="))
        assert "intel-iommu,intremap=on" in opts and "kernel-irqchip=split" in opts
        assert "file=/w/d.img" in opts and "nvme," in opts
        assert cmd[cmd.index("--rwdir") + 1] == "/w"


def test_build_command_amd():
    tools = Tools("/v/bin/vng", "/usr/bin/qemu-system-x86_64", "/boot/vmlinuz-6.1", "/bin/bb")
    cmd = build_command(tools, VMSpec(MODES["strict"], IOMMUS["amd"], "/w/d.img", "/w", "true"))
    assert "--append=iommu.strict=1" in cmd  # AMD-Vi needs no switch: qemu's IVRS turns it on
    opts = next(c for c in cmd if c.startswith("--qemu-opts="))
    assert "amd-iommu,intremap=on" in opts and "intel-iommu" not in opts
    # the driver forces strict under emulation: lazy reads as DMA there
    assert MODES["lazy"].expected_group_type(IOMMUS["amd"]) == "DMA"
    assert MODES["lazy"].expected_group_type(IOMMUS["intel"]) == "DMA-FQ"
    assert MODES["passthrough"].expected_group_type(IOMMUS["amd"]) == "identity"


def _boot(tmp_path, *releases):
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    for r in releases:
        boot.mkdir(exist_ok=True)
        (boot / f"vmlinuz-{r}").write_text("")
        (mods / r / "kernel").mkdir(parents=True)
    (boot / "vmlinuz-9.9.9-nomodules").write_text("")  # no modules: never chosen
    return str(boot), str(mods)


def test_kernel_by_version(tmp_path):
    boot, mods = _boot(tmp_path, "6.1.0-57-amd64", "6.1.0-9-amd64", "6.12.95+deb12-amd64")
    pick = lambda spec: kernels.release_of(kernels.find_kernel(spec, boot, mods))  # noqa: E731
    assert pick(None) == "6.1.0-57-amd64"  # the default is the newest 6.1, never 6.12
    assert pick("6.1") == "6.1.0-57-amd64"
    assert pick("6.12") == "6.12.95+deb12-amd64"
    assert pick("6.1.0-9-amd64") == "6.1.0-9-amd64"
    with pytest.raises(UserError, match=r"no .*vmlinuz-6.18\* with modules.*installed: 6.1.0-9"):
        kernels.find_kernel("6.18", boot, mods)
    with pytest.raises(UserError, match="not found"):
        kernels.find_kernel(str(tmp_path / "vmlinuz-none"), boot, mods)


def test_kernel_default_elsewhere(tmp_path):
    boot, mods = _boot(tmp_path, "6.8.0-31-generic", "6.5.0-1-generic")
    assert kernels.find_kernel(None, boot, mods).endswith("vmlinuz-6.8.0-31-generic")
    with pytest.raises(UserError, match="bookworm-backports"):
        kernels.find_kernel("6.12", boot, mods)


def test_workload_argv_uses_our_interpreter():
    argv = workload_argv("/w/r.json", "/w/plan.json")
    assert argv[0] == sys.executable and argv[1:3] == ["-m", "iommu_trace.lab.workloads"]
    assert argv[-2:] == ["steps", "/w/plan.json"]


def test_workload_steps(tmp_path, capsys):
    """Several workloads in one recording: their runs in order, in one result."""
    src = tmp_path / "src"
    src.write_bytes(b"\0" * 8192)
    plan, result = tmp_path / "plan.json", tmp_path / "r.json"
    cmd = f"dd if={src} of=/dev/null bs=4k"
    plan.write_text(
        json.dumps([{"kind": "run", "command": cmd}, {"kind": "run", "command": "true"}])
    )
    assert workloads.main(["--result", str(result), "steps", str(plan)]) == 0
    data = json.loads(result.read_text())
    assert data["workload"] == "plan" and [s["command"] for s in data["plan"]] == [cmd, "true"]
    assert len(data["runs"]) == 2 and data["runs"][0]["t_end_ns"] <= data["runs"][1]["t_start_ns"]
    plan.write_text(
        json.dumps([{"kind": "run", "command": "exit 4"}, {"kind": "run", "command": "true"}])
    )
    assert workloads.main(["--result", str(result), "steps", str(plan)]) == 4
    assert len(json.loads(result.read_text())["runs"]) == 1  # stops at the first failure


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


def test_failure_line_is_the_recorders_own_when_the_recorder_failed():
    """A recorder that fails after the workload ran is reported by its own line, not by the
    workload's last output (once seen: dd's summary stood in for the recorder's error)."""
    out = GuestResult(
        2,
        stdout=f'{workloads.RESULT_TAG} {{"exit_status": 0}}\n',
        stderr="iommu-trace: writing /tmp/t.iot\niommu-trace: error: disk full\n"
        "13107200 bytes (13 MB, 12 MiB) copied, 0.33 s, 39.9 MB/s\n",
        elapsed_s=1.0,
    )
    assert _workload_line(out, recorder=True) == "iommu-trace: error: disk full"
    assert _workload_line(out).startswith("13107200 bytes")  # the workload's own failure
    bare = GuestResult(2, stdout="", stderr="Killed\n", elapsed_s=1.0)
    assert _workload_line(bare, recorder=True) == "Killed"  # no line of its own: the last one
