"""Hostile traces: 700 mutants of the committed ones through every reader verb.

The mutants run in one watched child process (tests/fuzz_traces.py): a crash
of that process (a segfault in a decoder) fails the test naming the mutant
that caused it. FUZZ_SEED picks another seed; FUZZ_N another count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORPUS = HERE / "fixtures" / "fuzz"


def _run(tmp_path: Path, *args: str) -> list[dict]:
    report, progress = tmp_path / "report.json", tmp_path / "progress.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_traces.py"), "--report", str(report),
         "--progress", str(progress), *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        case = progress.read_text() if progress.exists() else "(before the first case)"
        how = (
            f"killed by {signal.Signals(-proc.returncode).name}"
            if proc.returncode < 0
            else f"exit {proc.returncode}"
        )
        pytest.fail(f"the reader process died ({how}) on {case}\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text())["failures"]


def _show(failures: list[dict]) -> str:
    return "\n".join(f"{f['case']} | {f['verb']}: {f['why']}" for f in failures[:40])


def test_fuzz_mutants(tmp_path):
    seed = os.environ.get("FUZZ_SEED", "14")
    n = os.environ.get("FUZZ_N", "700")  # ~60 s here; the suite must stay under 15 min
    failures = _run(tmp_path, "--seed", seed, "-n", n)
    assert not failures, f"{len(failures)} failures (seed {seed}):\n{_show(failures)}"


def test_fuzz_corpus(tmp_path):
    """The worst mutants found so far, kept as files, through every verb."""
    assert len(list(CORPUS.glob("*.iot"))) >= 5
    failures = _run(tmp_path, "--corpus", str(CORPUS))
    assert not failures, _show(failures)
