"""One lab run: boot a mode, record a workload in the guest, bring the trace and results back."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass

from ..errors import UserError
from ..render.progress import step
from ..tracefile.sidecar import workload_path, write_workload
from ..tracer.addresses import TextRedactor
from ..tracer.launch import give_to_invoker
from . import kmodule
from .iommus import DEFAULT_IOMMU, IOMMUS, Iommu
from .modes import Mode
from .vm import GuestResult, Progress, Tools, VMSpec, kernel_release, run_vm, stderr_progress
from .workloads import RESULT_TAG, SG_MODULE

DISK_BYTES = 4 << 30  # sparse: costs nothing; reads of holes are zeros, DMAed all the same


def guest_python() -> str:
    # the guest sees the host's root, so our own venv interpreter is valid there too
    exe = sys.executable or os.path.join(sys.prefix, "bin", "python")
    return os.path.abspath(exe)


def workload_argv(result: str, plan: str) -> list[str]:
    """The guest command that runs the workloads of PLAN (a JSON list) and writes RESULT."""
    return [guest_python(), "-m", "iommu_trace.lab.workloads", "--result", result, "steps", plan]


def dd_step(bs: str, count: int) -> dict:
    return {"kind": "dd", "bs": bs, "count": count}


def sg_step(nents: list[int], maps: int) -> dict:
    """Long scatter lists on the NVMe device; the module is built for the guest kernel."""
    return {"kind": "sg", "nents": nents, "maps": maps}


@dataclass
class LabResult:
    guest: GuestResult
    facts: dict
    workload: dict | None
    trace: str | None  # None while there is no recorder
    sidecar: str


def _load(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _workload_line(res: GuestResult, recorder: bool = False) -> str:
    """The last line the workload wrote, for one-line failure reports; with `recorder`,
    the recorder's own last line ("iommu-trace: ...") where it wrote one."""
    lines = [ln.strip() for ln in (res.stderr + res.stdout).splitlines()]
    ours = [ln for ln in lines if ln and not ln.startswith(("guest: ", RESULT_TAG))]
    own = [ln for ln in ours if ln.startswith("iommu-trace:")] if recorder else []
    return (own or ours or [""])[-1]


def run_lab(
    tools: Tools,
    mode: Mode,
    output: str,
    steps: list[dict],
    timeout: float,
    record: bool,
    iommu: Iommu = IOMMUS[DEFAULT_IOMMU],
    progress: Progress | None = stderr_progress,
    memory: str = "2G",
    cpus: int = 2,
    verbose: bool = False,
    record_opts: tuple[str, ...] = (),
) -> LabResult:
    """Boot `mode` under `iommu`, run the workload steps (recorded unless not `record`)."""
    output = os.path.abspath(output)
    outdir = os.path.dirname(output)
    if not os.path.isdir(outdir):
        raise UserError(f"output directory {outdir} does not exist")
    # the only directory the guest may write: shared over 9p, removed afterwards
    work = tempfile.mkdtemp(prefix=".iommu-lab-", dir=outdir)
    try:
        disk = os.path.join(work, "nvme.img")
        with open(disk, "wb") as f:
            f.truncate(DISK_BYTES)
        names = ("facts.json", "workload.json", "trace.iot", "plan.json")
        paths = {k: os.path.join(work, k) for k in names}
        release = kernel_release(tools.kernel)
        steps = [dict(s) for s in steps]
        for st in steps:
            if st["kind"] == "sg":
                if progress:
                    progress(f"lab: building the {SG_MODULE} module for {release}")
                st["module"] = kmodule.build(release, work)
        with open(paths["plan.json"], "w") as f:
            json.dump(steps, f)
        spec_path = os.path.join(work, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(
                {
                    "facts": paths["facts.json"],
                    "workload": workload_argv(paths["workload.json"], paths["plan.json"]),
                    "record": paths["trace.iot"] if record else None,
                    # the workload's numbers go into the trace itself, and the
                    # guest's recorder drains 4x the default buffer (TCG is slow)
                    "record_opts": [
                        "--buffer-pages=4096",
                        f"--workload-result={paths['workload.json']}",
                        *record_opts,
                    ],
                },
                f,
            )
        command = shlex.join([guest_python(), "-m", "iommu_trace.lab.guest", spec_path])
        spec = VMSpec(mode, iommu, disk, work, command, cpus=cpus, memory=memory, verbose=verbose)
        res = run_vm(tools, spec, timeout, progress)
        step(progress, "copying the trace and results out")

        facts = _load(paths["facts.json"])
        if facts is None:
            raise UserError(
                f"guest ({mode.name}) did not reach the lab script (exit {res.returncode}): "
                f"{res.last_line() or 'no output; try --verbose'}"
            )
        result = _load(paths["workload.json"])
        sidecar = workload_path(output)
        fields = {
            "mode": mode.name,
            "mode_cmdline": spec.cmdline,
            "iommu": iommu.name,
            "kernel": release,
            "guest": facts,
            "recorded": record,
            "guest_exit_status": res.returncode,
            "vm_elapsed_s": round(res.elapsed_s, 3),
        }
        if "--keep-addresses" not in record_opts:  # the guest's dmesg and command line
            redactor = TextRedactor()
            fields = redactor.tree(fields)
            result = redactor.tree(result)
        write_workload(sidecar, result, **fields)
        give_to_invoker(sidecar)
        if res.returncode != 0:
            ok = result is not None and result.get("exit_status") == 0
            what = "recorder" if record and ok else "workload"
            detail = _workload_line(res, recorder=what == "recorder")
            raise UserError(
                f"{what} failed inside the guest ({mode.name}, exit {res.returncode})"
                + (f": {detail}" if detail else "")
            )
        got = (facts.get("nvme") or {}).get("group_type")
        want = mode.expected_group_type(iommu)
        if progress and want != mode.group_type:
            progress(f"lab: {iommu.strict_only}; {mode.name} runs as strict here")
        if got != want and progress:
            progress(f"lab: warning: NVMe iommu group type is {got}, expected {want}")
        trace = None
        if record:
            if not os.path.exists(paths["trace.iot"]):
                raise UserError("the recorder exited 0 but wrote no trace")
            shutil.move(paths["trace.iot"], output)
            give_to_invoker(output)
            trace = output
        return LabResult(res, facts, result, trace, sidecar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
