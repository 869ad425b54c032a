"""What `record` loads before it records: no pandas (pyarrow would import it for nothing)."""

from __future__ import annotations

import subprocess
import sys

from iommu_trace.tracefile.reader import load

from conftest import requires_bpf


@requires_bpf
def test_record_never_imports_pandas(tmp_path):
    out = tmp_path / "t.iot"
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "iommu_trace.cli", "record", "--all",
         "-o", str(out), "--", "true"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if "|" in ln}
    assert "pyarrow" in imported and "bcc" in imported
    # the refused attempt is listed as "pandas"; a real import loads its submodules
    assert not {m for m in imported if m.startswith("pandas.")}
    assert "pyarrow.pandas_compat" not in imported
    assert load(str(out)).finalized  # and the trace was written all the same
