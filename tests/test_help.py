"""Every verb's --help shows worked examples, and --help loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from iommu_trace.cli import cli
from iommu_trace.commands import COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_verb_has_examples(command):
    r = CliRunner().invoke(cli, [command.name, "--help"])
    assert r.exit_code == 0, r.output
    examples = r.output.split("\n  Examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith("    ") for line in examples if line)
    assert f"iommu-trace {command.name}" in "\n".join(examples)


def test_help_imports_no_heavy_library():
    probe = (
        "import sys\n"
        "from iommu_trace.cli import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='iommu-trace')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(m for m in ('pandas', 'pyarrow', 'matplotlib', 'networkx', 'bcc')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == ""
