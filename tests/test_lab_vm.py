"""The lab for real: boots the Debian kernel under qemu TCG with an emulated VT-d (~20 s a boot)."""

from __future__ import annotations

import os
import time

import pytest

from conftest import cli, one_line_error

# the failure paths before the boot are fast; the ones marked lab boot a VM
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def lab(out, *args, timeout=300, **kw):
    return cli("lab", "-o", str(out), *args, timeout=timeout, **kw)


# Each mode's group type and recorded contract: tests/test_lab_modes.py.


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
