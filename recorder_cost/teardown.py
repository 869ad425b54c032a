"""How long a recording's uprobes take to come down, as uprobe_multi links and as perf events.

Not a test: run by hand (root), quoted in docs/recorder-cost.md.

    sudo .venv/bin/python -m iommu_trace.recorder_cost.teardown --rounds 5 \\
        -o recorder_cost/results/NAME.json

Each round runs `record -a -d 1` with the same uprobes twice, once per mechanism, in
alternating order, and times (recorder_cost/attach.record, as the harness does) the
recorder's exit to its holder's (tracer/detach.py) exit: the tear-down that a process
followed with `record -p` pays beside it, and the harness waits out between blocks.
By default 12 functions, entry and return (24 uprobes, as many as the default set's
CUDA probes on the GPU machine), in libc or in --lib.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from ..tracefile.reader import load
from .attach import record

# rarely called libc functions: the probes sit idle, only their coming down is timed
LIBC = ("getpwnam getgrnam gethostbyname getservbyname getprotobyname mkfifo mknod chroot "
        "swapon swapoff sethostname setdomainname").split()  # fmt: skip
MECHANISMS = {"uprobe_multi link": [], "perf event": ["--no-uprobe-links"]}


def one(lib: str, syms: list[str], extra: list[str], out: Path) -> dict:
    probes = [a for s in syms for a in ("--uprobe", f"{lib}:{s}")]
    cmd = [sys.executable, "-m", "iommu_trace.cli", "record", "-a", "-d", "1",
           "--no-probe", "dma,iommu-map,iotlb-flush,iova,iommu-time,nvidia,syscall,process,"
           "cuda-driver,cuda-runtime",
           *probes, *extra, "-o", str(out)]  # fmt: skip
    r = record(cmd, timeout=120)
    if r["rc"] != 0:
        raise SystemExit(f"record failed ({r['rc']}): {' '.join(cmd)}")
    meta = load(str(out)).meta
    attached = [p for p in meta["probes"] if p["path"] == "uprobe" and p["status"] == "attach"]
    return {
        "uprobes_via": meta["uprobes_via"],
        "uprobes": 2 * len(attached),  # entry and return
        "teardown_s": (r["down_ns"] - r["exited_ns"]) / 1e9,
        "holders": r["holders"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lib", default="c", help="library of the uprobes (default libc)")
    ap.add_argument("--syms", default=",".join(LIBC), help="comma list of its functions")
    ap.add_argument("-o", "--out", help="write the runs and medians as JSON here")
    a = ap.parse_args(argv)
    syms = a.syms.split(",")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            order = list(MECHANISMS) if i % 2 == 0 else list(reversed(MECHANISMS))
            for name in order:
                r = one(a.lib, syms, MECHANISMS[name], Path(tmp) / f"{i}.iot")
                assert r["uprobes_via"] == name, r
                runs.append({"round": i, **r})
                took = f"{r['uprobes']} uprobes down in {r['teardown_s']:.3f} s"
                print(f"round {i}: {name:18} {took}")
    medians = {
        name: statistics.median(r["teardown_s"] for r in runs if r["uprobes_via"] == name)
        for name in MECHANISMS
    }
    for name, m in medians.items():
        print(f"median tear-down, {name}: {m:.3f} s")
    if a.out:
        doc = {"machine": platform.node(), "kernel": platform.release(), "lib": a.lib,
               "syms": syms, "runs": runs, "median_teardown_s": medians}  # fmt: skip
        Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
