"""`iommu-trace record`: run a command (or follow a pid, or all) under the BPF recorder."""

from __future__ import annotations

import importlib.abc
import sys

import click

from ..errors import UserError


class _NoPandas(importlib.abc.MetaPathFinder):
    """Refuses `import pandas`: the recorder never uses it, but pyarrow imports it on
    its first pa.array() call, only to ask whether the input is a pandas object, and
    goes on without it when the import fails. That import is a tenth of a recording's
    start-up on a host (0.7 s) and over a minute in the lab's qemu guest."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ImportError("iommu-trace record does not use pandas")
        return None


def _without_pandas() -> None:
    if "pandas" not in sys.modules:  # imported already (tests, an embedding): keep it
        sys.meta_path.insert(0, _NoPandas())


def _probe_set(values: tuple[str, ...]) -> set[str]:
    return {v.strip() for item in values for v in item.split(",") if v.strip()}


EXAMPLES = (
    "\b\nExamples:\n"
    "  sudo iommu-trace record -o run.iot -- python my_workload.py --args\n"
    "  sudo iommu-trace record -a -d 10 -o idle.iot           # system-wide, 10 s\n"
    "  sudo iommu-trace record -p 4242 -o job.iot             # a running process\n"
    "  sudo iommu-trace record --probe cudaMemcpy --uprobe c:getpid -o r.iot -- ./app\n"
    "  sudo iommu-trace record --ustack ioctl -o r.iot -- ./app  # who made each ioctl\n"
    "  sudo iommu-trace record --count -a -d 60 -o storm.iot  # counts only: any event rate\n"
    "  iommu-trace report storm.iot                          # per category, device, second\n"
)


@click.command(context_settings={"ignore_unknown_options": False}, epilog=EXAMPLES)
@click.option("-o", "--output", default="trace.iot", show_default=True, help="trace file to write")
@click.option("-p", "--pid", type=int, help="follow this running process instead of a command")
@click.option("-a", "--all", "follow_all", is_flag=True, help="record system-wide")
@click.option(
    "--as-root", is_flag=True, help="under sudo, run the command as root, not as the invoking user"
)
@click.option(
    "--probe",
    "enable",
    multiple=True,
    help="also enable these probes or groups (comma list), e.g. cudaMemcpy",
)
@click.option(
    "--no-probe", "disable", multiple=True, help="disable these probes or groups (comma list)"
)
@click.option(
    "--uprobe",
    "uprobes",
    multiple=True,
    metavar="LIB:SYMBOL",
    help="ad-hoc user probe with entry/return, e.g. c:getpid or /path/libx.so:fn",
)
@click.option(
    "--ustack",
    "user_stacks",
    multiple=True,
    metavar="PROBES",
    help="also take user stacks on these probes or groups (comma list), e.g. ioctl; "
    "kernel DMA events and CUDA calls take theirs already",
)
@click.option(
    "--keep-addresses", is_flag=True, help="store raw physical/DMA addresses (they defeat KASLR)"
)
@click.option("-d", "--duration", type=float, help="stop after this many seconds")
@click.option(
    "--catalog", type=click.Path(exists=True, dir_okay=False), help="use another probe catalog"
)
@click.option(
    "--buffer-pages",
    type=int,
    help="buffer size in pages: the ring buffer's (default 4096, 16 MiB), or the perf "
    "buffer's on each CPU (default 1024)",
)
@click.option(
    "--stack-entries",
    default=16384,
    show_default=True,
    help="stacks the BPF stack map holds (~1 KiB each); raise it when record says stacks were "
    "lost to hash collisions",
)
@click.option(
    "--perf-buffer", is_flag=True, help="use the perf buffer even where the ring buffer exists"
)
@click.option(
    "--no-raw-tracepoints",
    "no_raw",
    is_flag=True,
    help="read tracepoints through their tracefs records, not raw tracepoints "
    "(to compare; records over 8 KiB are withheld by the kernel, which the trace then counts)",
)
@click.option(
    "--no-uprobe-links",
    "no_uprobe_links",
    is_flag=True,
    help="attach uprobes as perf events, not uprobe_multi BPF links (Linux >= 6.6; links "
    "come down together at the end, perf events one RCU grace period at a time)",
)
@click.option(
    "--workload-result",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="JSON the workload writes about itself (e.g. bytes and seconds per run), "
    "stored in the trace's metadata when the command ends",
)
@click.option(
    "--no-pmu", is_flag=True, help="do not count the IOMMU PMU's events (IOTLB lookups/hits)"
)
@click.option(
    "--count-software",
    multiple=True,
    type=click.Choice(["cpu-clock", "task-clock"]),
    help="also count this software perf event once a second (the PMU path where no PMU is)",
)
@click.option(
    "--count",
    is_flag=True,
    help="count events in the kernel instead of recording each one (for rates no consumer "
    "can follow): exact counts and bytes per probe, device, size (log2) and second, in "
    "per-CPU BPF maps; no per-event rows and no stacks are collected, so calls, callgraph "
    "and timelines cannot read the trace; info, report and compare can",
)
@click.option(
    "--count-entries",
    type=int,
    default=131_072,  # tracer/tallies.py's COUNT_ENTRIES (not imported: it loads numpy)
    show_default=True,
    help="with --count: keys (probe x device x size x second) the count map holds; events "
    "a full map refuses are counted and said, never lost silently",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(
    output,
    pid,
    follow_all,
    as_root,
    enable,
    disable,
    uprobes,
    user_stacks,
    keep_addresses,
    duration,
    catalog,
    buffer_pages,
    stack_entries,
    perf_buffer,
    no_raw,
    no_uprobe_links,
    workload_result,
    no_pmu,
    count_software,
    count,
    count_entries,
    command,
) -> None:
    """Record DMA/IOMMU and CUDA events while COMMAND runs (or for -p PID, or -a).

    Exits with the command's exit status; the trace is finalized on Ctrl-C,
    SIGTERM, or when the command exits or crashes.
    """
    _without_pandas()
    from ..tracer import recorder

    if not command and pid is None and not follow_all:
        raise UserError("give a command (after --), -p PID, or -a for system-wide")
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("buffer_pages", "perf_buffer", "stack_entries", "count_entries")
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    event_only = [g for g in given if g != "--count-entries"]
    if count and event_only:
        raise UserError(
            f"--count emits no events and takes no stacks: {event_only[0]} does not apply"
        )
    if not count and "--count-entries" in given:
        raise UserError("--count-entries sizes the map of --count; give --count too")
    opts = recorder.Options(
        output=output,
        command=list(command),
        pid=pid,
        follow_all=follow_all,
        as_root=as_root,
        enable=_probe_set(enable),
        disable=_probe_set(disable),
        uprobes=list(uprobes),
        user_stacks=_probe_set(user_stacks),
        keep_addresses=keep_addresses,
        duration=duration,
        catalog=catalog,
        buffer_pages=buffer_pages,
        stack_entries=stack_entries,
        perf_buffer=perf_buffer,
        raw_tracepoints=not no_raw,
        uprobe_links=not no_uprobe_links,
        workload_result=workload_result,
        pmu=not no_pmu,
        count_software=tuple(count_software),
        count=count,
        count_entries=count_entries,
    )
    try:
        code = recorder.main_record(opts)
    except recorder.RecordError as e:
        raise UserError(str(e)) from None
    sys.exit(code)
