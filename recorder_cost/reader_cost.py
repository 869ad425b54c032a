"""Time the readers on a big trace: wall, CPU and peak RSS, medians of N runs.

    python -m iommu_trace.recorder_cost.reader_cost /tmp/big10m.iot -r 5

Each verb runs as a user runs it (`iommu-trace VERB TRACE`, output discarded)
under /usr/bin/time -v. CPU time (user+sys) is printed beside wall time: on a
shared VM the wall time also counts other tenants.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile

VERBS = {
    "info": [],
    "report": [],
    "calls": [],
    "callgraph": ["-o", "{tmp}/g.svg"],
}


def run_once(verb: str, trace: str, tmp: str) -> tuple[float, float, int]:
    args = [a.format(tmp=tmp) for a in VERBS[verb]]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "iommu_trace.cli", verb, trace, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{verb} failed: {p.stderr.strip().splitlines()[-1]}")
    err = p.stderr

    def field(name: str) -> str:
        m = re.search(rf"{name}: (\S+)", err)
        if m is None:
            raise SystemExit(f"{verb}: /usr/bin/time -v printed no {name!r}")
        return m[1]

    wall = field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)")
    parts = [float(x) for x in wall.split(":")]
    secs = sum(v * 60 ** (len(parts) - 1 - i) for i, v in enumerate(parts))
    cpu = float(field("User time \\(seconds\\)")) + float(field("System time \\(seconds\\)"))
    return secs, cpu, int(field(r"Maximum resident set size \(kbytes\)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("-r", "--runs", type=int, default=5)
    ap.add_argument("verbs", nargs="*", default=list(VERBS))
    a = ap.parse_intermixed_args()
    print(f"{'verb':<10} {'wall s':>7} {'cpu s':>7} {'RSS MB':>7}  (median of {a.runs})")
    with tempfile.TemporaryDirectory() as tmp:
        for verb in a.verbs:
            runs = [run_once(verb, a.trace, tmp) for _ in range(a.runs)]
            wall, cpu, rss = (statistics.median(x) for x in zip(*runs, strict=True))
            print(f"{verb:<10} {wall:>7.2f} {cpu:>7.2f} {rss / 1024:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
