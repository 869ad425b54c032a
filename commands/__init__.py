"""One module per verb; `cli.py` registers COMMANDS in this order (the order of --help).

Each module holds option parsing and the call into analysis/ and render/; heavy
libraries (pandas, pyarrow, matplotlib, networkx, bcc) are imported inside the verb
so that `iommu-trace --help` stays fast.
"""

from __future__ import annotations

import click

from .bench import bench
from .callgraph import callgraph
from .calls import calls
from .compare import compare
from .doctor import doctor
from .export import export
from .info import info
from .kvsplit import kvsplit
from .lab import lab
from .overhead import overhead
from .probes import probes
from .record import record
from .report import report
from .topo import topo
from .upgrade import upgrade
from .whatif import whatif

COMMANDS: list[click.Command] = [
    record, info, upgrade, probes, report, compare, callgraph, calls, export,
    overhead, whatif, doctor, topo, bench, lab, kvsplit,
]  # fmt: skip
