"""`pip install .` gives a working package: data files travel, the console script runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_installs_and_runs(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next((tmp_path / "dist").glob("iommu_trace-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("iommu_trace/probes/catalog.toml", "iommu_trace/tracer/program.c",
                   "iommu_trace/cli.py"):  # fmt: skip
        assert needed in names
    assert not [n for n in names if n.startswith(("tests/", "iommu_trace/tests/"))]
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    code = "import iommu_trace, sys; print(iommu_trace.__file__)"
    where = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert where.startswith(str(site))
    p = subprocess.run([sys.executable, "-m", "iommu_trace.cli", "probes", "--format", "json"],
                       env=env, cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert '"name": "dma_map"' in p.stdout  # the catalog came with the wheel


def test_recording_needs_no_drawing_packages():
    """GPU nodes may lack graphviz, matplotlib or pyroute2: record and info must not import them."""
    code = (
        "import sys\n"
        "for m in ('graphviz', 'matplotlib', 'pyroute2', 'duckdb'):\n"
        "    sys.modules[m] = None  # any import of these now fails\n"
        "sys.argv = ['iommu-trace', '--help']\n"
        "from iommu_trace import cli\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit as e:\n"
        "    sys.exit(e.code)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "record" in p.stdout
