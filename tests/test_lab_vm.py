"""The lab for real: boots the Debian kernel under qemu TCG with an emulated VT-d (~20 s a boot)."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import cli, one_line_error
from iommu_trace.lab.modes import MODES

# the failure paths before the boot are fast; the ones marked lab boot a VM
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

NVME_TYPE = "cat /sys/class/nvme/nvme0/device/iommu_group/type"


def lab(out, *args, timeout=300, **kw):
    return cli("lab", "-o", str(out), *args, timeout=timeout, **kw)


@pytest.mark.lab
@pytest.mark.parametrize("mode", list(MODES))
def test_mode_sets_nvme_group_type(tmp_path, mode):
    out = tmp_path / f"{mode}.iot"
    p = lab(out, "--mode", mode, "--no-record", "--run", NVME_TYPE)
    assert p.returncode == 0, p.stderr
    want = MODES[mode].group_type
    assert f"vm| {want}\n" in p.stderr  # the command's own output, from the guest
    side = json.loads((tmp_path / f"{mode}.iot.workload.json").read_text())
    assert side["guest"]["nvme"]["group_type"] == want
    assert side["workload"]["exit_status"] == 0
    assert [f.name for f in tmp_path.iterdir()] == [f"{mode}.iot.workload.json"]  # no leftovers


@pytest.mark.lab
def test_dd_recorded(tmp_path):
    """The whole path: guest recorder, dd, trace moved back, workload numbers beside it."""
    out = tmp_path / "strict.iot"
    p = lab(out, "--mode", "strict", "--bs", "64k", "--count", "200", timeout=400)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0
    runs = json.loads((tmp_path / "strict.iot.workload.json").read_text())["workload"]["runs"]
    assert runs[0]["bytes"] == 200 * 65536 and runs[0]["elapsed_s"] > 0
    info = cli("info", str(out))
    assert info.returncode == 0 and "strict" in info.stdout, info.stderr


@pytest.mark.lab
def test_workload_failure_is_one_line(tmp_path):
    p = lab(tmp_path / "x.iot", "--mode", "strict", "-q", "--no-record",
            "--run", "echo boom >&2; exit 3")  # fmt: skip
    line = one_line_error(p)
    assert "workload failed inside the guest" in line and "exit 3" in line and "boom" in line


@pytest.mark.lab
def test_hung_guest_is_stopped(tmp_path):
    t0 = time.monotonic()
    p = lab(tmp_path / "x.iot", "--mode", "lazy", "-q", "--no-record",
            "--run", "sleep 600", "--timeout", "10")  # fmt: skip
    line = one_line_error(p)
    assert "did not finish within 10 s" in line
    assert time.monotonic() - t0 < 40  # qemu was killed, not waited for
    assert list(tmp_path.iterdir()) == []  # work directory removed


def test_qemu_missing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    line = one_line_error(lab(tmp_path / "x.iot", "--mode", "strict", env={"PATH": str(empty)}))
    assert "qemu-system-x86_64 not found" in line and "apt-get install qemu-system-x86" in line


def test_kernel_missing(tmp_path):
    p = lab(tmp_path / "x.iot", "--mode", "strict", "--kernel", str(tmp_path / "vmlinuz-none"))
    line = one_line_error(p)
    assert "vmlinuz-none not found" in line and "linux-image-amd64" in line


def test_not_root(tmp_path):
    tmp_path.chmod(0o777)
    p = cli("lab", "--mode", "strict", "-o", str(tmp_path / "x.iot"),
            preexec_fn=lambda: os.setuid(65534))  # fmt: skip
    assert "needs root" in one_line_error(p)
