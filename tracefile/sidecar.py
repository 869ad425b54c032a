"""The files beside a trace: TRACE.workload.json and TRACE.bench.csv.

One schema for the workload sidecar: an envelope whose "workload" key holds the
workload's own results (dd "runs", or FlexGen "steps" and "batch"), beside what
the lab adds (mode, kernel, guest facts, exit status). Older files wrote the
results at the top level (examples/flexgen_run.py: `"workload": "flexgen"`, a
name, not the results); they still read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

WORKLOAD_SUFFIX = ".workload.json"  # TRACE.iot -> TRACE.iot.workload.json
BENCH_SUFFIX = ".bench.csv"  # TRACE.iot -> TRACE.iot.bench.csv


class SidecarError(ValueError):
    """A sidecar that exists but cannot be read; the message is one line."""


@dataclass
class WorkloadSidecar:
    path: str
    envelope: dict[str, Any]  # the file as written: lab fields and "workload"
    results: dict[str, Any] = field(default_factory=dict)  # the workload's own

    @property
    def runs(self) -> list[dict]:
        return list(self.results.get("runs") or [])

    @property
    def steps(self) -> list[dict] | None:
        return generation_steps(self.results)


def generation_steps(results: dict[str, Any]) -> list[dict] | None:
    """FlexGen's generation steps (timed dicts) in a workload's results; None for anything
    else, such as the lab's plan of workloads, which older lab files wrote under "steps"."""
    steps = results.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(s, dict) and "t_start_ns" in s and "t_end_ns" in s for s in steps
    ):
        return None
    return steps


def workload_path(trace_path: str) -> str:
    return trace_path + WORKLOAD_SUFFIX


def bench_path(trace_path: str) -> str:
    return trace_path + BENCH_SUFFIX


def from_dict(data: dict[str, Any], path: str) -> WorkloadSidecar:
    """Either schema: results under "workload", or (older files) at the top level."""
    inner = data.get("workload")
    return WorkloadSidecar(path, data, inner if isinstance(inner, dict) else data)


def read_workload(trace_path: str) -> WorkloadSidecar | None:
    """TRACE.workload.json, or None when there is none."""
    path = workload_path(trace_path)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise SidecarError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: not a workload sidecar (a JSON object)")
    return from_dict(data, path)


def write_workload(path: str, results: dict[str, Any] | None, **envelope: Any) -> None:
    """Write the sidecar at path: the workload's results and what the caller adds."""
    with open(path, "w") as f:
        json.dump({**envelope, "workload": results}, f, indent=1)
