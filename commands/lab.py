"""`iommu-trace lab`: record a workload in a VM booted with strict, lazy or passthrough IOMMU."""

from __future__ import annotations

import os

import click

from ..errors import UserError
from ..lab.iommus import DEFAULT_IOMMU, IOMMUS
from ..lab.kernels import DEFAULT_KERNEL
from ..lab.modes import MODES

EXAMPLES = (
    "\b\nExamples:\n"
    "  sudo iommu-trace lab --mode strict -o strict.iot\n"
    "  sudo iommu-trace lab --mode lazy --workload sweep -o lazy.iot\n"
    "  sudo iommu-trace lab --mode strict --iommu amd -o amd.iot\n"
    "  sudo iommu-trace lab --mode strict --kernel 6.12 --workload sg --workload dd -o sg.iot\n"
    "  sudo iommu-trace lab --mode passthrough --run 'cat /proc/iomem' -o pt.iot\n"
)


@click.command("lab", epilog=EXAMPLES)
@click.option("--mode", type=click.Choice(list(MODES)), required=True, help="IOMMU DMA mode.")
@click.option("--iommu", type=click.Choice(list(IOMMUS)), default=DEFAULT_IOMMU, show_default=True,
              help="Emulated IOMMU: intel (VT-d) or amd (AMD-Vi; strict in any mode but "
              "passthrough under emulation).")  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Trace file.")
@click.option(
    "--workload", "workloads", type=click.Choice(["dd", "sweep", "sg"]), multiple=True,
    help="dd (the default): direct-I/O reads of the NVMe disk; sweep: the same at 4 KiB..1 MiB "
    "blocks; sg: the lab's module maps long scatter lists (--nents) on the NVMe device. "
    "Repeat to run several in one recording, in order.",
)  # fmt: skip
@click.option("--bs", default="64k", show_default=True, help="dd block size.")
@click.option("--count", default=2000, show_default=True, help="dd block count.")
@click.option("--total", default="64M", show_default=True, help="sweep: bytes per block size.")
@click.option(
    "--nents",
    default="1024,2049,4096",
    show_default=True,
    help="sg: list lengths (4 KiB pages each), comma-separated.",
)
@click.option("--maps", default=8, show_default=True, help="sg: maps and unmaps per length.")
@click.option("--run", "command", metavar="CMD", help="Run this shell command instead.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds before qemu is stopped.")
@click.option("--kernel", metavar="VERSION|PATH",
              help=f"Guest kernel: a version of an installed /boot/vmlinuz-* (6.1, 6.12) or an "
              f"image path  [default: {DEFAULT_KERNEL}]")  # fmt: skip
@click.option("--busybox", type=click.Path(dir_okay=False), help="Static busybox for virtme.")
@click.option("--memory", default="2G", show_default=True, help="Guest memory.")
@click.option("--cpus", default=2, show_default=True, help="Guest CPUs.")
@click.option("--no-record", is_flag=True, help="Run the workload without the recorder.")
@click.option("--record-opt", "record_opts", multiple=True, metavar="OPT",
              help="Pass to `record` (repeat), e.g. --record-opt=--buffer-pages=4096.")  # fmt: skip
@click.option("--costs", "costs", type=click.Path(dir_okay=False), metavar="FILE",
              help="Put this mode's measured T_IOMMU per call into the cost table FILE "
              "(for `whatif --costs`; strict and lazy).")  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Show the guest kernel console.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only errors.")
def lab(mode, iommu, output, workloads, bs, count, total, nents, maps, command, timeout, kernel,
        busybox, memory, cpus, no_record, record_opts, costs, verbose, quiet) -> None:  # fmt: skip
    """Boot a VM (emulated VT-d or AMD-Vi, NVMe) in one IOMMU mode and record a workload there.

    The trace goes to OUTPUT, the workload's own numbers (bytes, seconds per run)
    to OUTPUT.workload.json.  Needs root, qemu-system-x86, virtme-ng and a
    /boot/vmlinuz-* with modules (and its headers for `sg`); no KVM (qemu TCG,
    a boot takes ~20 s).
    """
    from ..lab.session import dd_step, run_lab, sg_step
    from ..lab.vm import find_tools
    from ..lab.workloads import parse_size
    from ..render.progress import Steps

    if os.geteuid() != 0:
        raise UserError("lab needs root (BPF inside the guest runs as the host user): use sudo")
    try:
        parse_size(bs), parse_size(total)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        lengths = [int(n) for n in nents.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1 or maps < 1:
        raise UserError(f"--nents {nents!r} --maps {maps}: positive integers (--nents 1024,4096)")
    if command is not None and workloads:
        raise UserError("--run replaces --workload: give one or the other")
    tools = find_tools(kernel, busybox)
    record = not no_record
    say = None if quiet else Steps()  # lines, and on a terminal a spinner naming the step
    if command is not None:
        steps = [{"kind": "run", "command": command}]
    else:
        make = {
            "dd": lambda: dd_step(bs, count),
            "sweep": lambda: {"kind": "sweep", "total": total},
            "sg": lambda: sg_step(lengths, maps),
        }
        steps = [make[kind]() for kind in workloads or ("dd",)]
    try:
        res = run_lab(tools, MODES[mode], output, steps, timeout, record, iommu=IOMMUS[iommu],
                      progress=say, memory=memory, cpus=cpus, verbose=verbose,
                      record_opts=record_opts)  # fmt: skip
        if costs and res.trace:
            _write_costs(costs, mode, res.trace, say)
    finally:
        if say:
            say.done()
    if quiet:
        return
    if res.workload:
        for run in res.workload.get("runs", []):
            size = f"bs={run['bs']} " if "bs" in run else ""
            size += f"sg nents={run['nents']} x {run['maps']} " if "nents" in run else ""
            nbytes = f"{run['bytes']} bytes in " if run.get("bytes") is not None else ""
            click.echo(f"lab: {size}{nbytes}{run['elapsed_s']:.3f} s", err=True)
    group = res.facts.get("nvme", {}).get("group_type")
    where = res.trace or "(not recorded)"
    click.echo(f"lab: {mode} on {iommu} (group type {group}): trace {where}, results {res.sidecar}",
               err=True)  # fmt: skip


def _write_costs(path: str, mode: str, trace_path: str, say) -> None:
    from ..analysis import costs as C
    from ..errors import UserError
    from ..render.progress import step
    from ._load import load_trace

    if mode == "passthrough":
        if say:
            say("lab: passthrough costs nothing in IOMMU code: the cost table is left as it is")
        return
    step(say, f"measuring {mode} costs per call from the trace")
    try:
        C.merge(path, mode, C.measure(load_trace(trace_path), mode), trace_path)
    except C.CostsError as e:
        raise UserError(f"cost table not written: {e}") from None
    if say:
        say(f"lab: {mode} costs written to {path}")
