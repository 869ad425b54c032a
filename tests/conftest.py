"""Shared helpers: the CLI as a user runs it, and workloads whose calls are known."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TRACES = HERE.parent / "traces"


def cli(
    *args: str, env: dict | None = None, timeout: float = 120, **kw
) -> subprocess.CompletedProcess:
    """Run `iommu-trace ARGS` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "iommu_trace.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kw,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the failure is one clear line with no traceback, and return it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("iommu-trace: "), lines[0]
    return lines[0]


requires_bpf = pytest.mark.skipif(os.geteuid() != 0, reason="recording needs root and BPF")


@pytest.fixture(scope="session")
def known_calls(tmp_path_factory) -> str:
    """tests/workloads/known_calls.c built with frame pointers (user stacks need them)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("a C compiler is needed to build the test workload (apt-get install gcc)")
    out = tmp_path_factory.mktemp("bin") / "known_calls"
    subprocess.run(
        [
            gcc,
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-o",
            str(out),
            str(HERE / "workloads" / "known_calls.c"),
        ],
        check=True,
    )
    out.parent.chmod(0o755)
    return str(out)


RATE = HERE.parent / "recorder_cost"
# The benchmark catalog: raw tracepoints on system call entry and exit (recorder_cost/rate.py).
RATE_CATALOG = str(RATE / "rate_catalog.toml")
SYS_GETPPID = {"x86_64": 110, "aarch64": 173}.get(os.uname().machine)


@pytest.fixture(scope="session")
def loop(tmp_path_factory) -> str:
    """recorder_cost/loop.c: tight loops of system calls whose number is known."""
    exe = tmp_path_factory.mktemp("loop") / "loop"
    subprocess.run(
        ["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(RATE / "loop.c")],
        check=True,
    )
    exe.parent.chmod(0o755)
    return str(exe)
