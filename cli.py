"""The `iommu-trace` command line: one click group, each verb a thin layer over a module."""

from __future__ import annotations

import sys

import click

from . import __version__


class UserError(click.ClickException):
    """A failure the user can fix: printed as one line, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # one clear line, never a traceback
        click.echo(f"iommu-trace: {self.format_message()}", err=True, file=file)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iommu-trace")
def cli() -> None:
    """Trace and explain what IOMMU protection costs a (GPU) workload.

    Record once (`record`), then read the trace as many ways as you like.
    """


# ------------------------------------------------------------------ record


def _probe_set(values: tuple[str, ...]) -> set[str]:
    return {v.strip() for item in values for v in item.split(",") if v.strip()}


@cli.command(context_settings={"ignore_unknown_options": False})
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
    "--keep-addresses", is_flag=True, help="store raw physical/DMA addresses (they defeat KASLR)"
)
@click.option("-d", "--duration", type=float, help="stop after this many seconds")
@click.option(
    "--catalog", type=click.Path(exists=True, dir_okay=False), help="use another probe catalog"
)
@click.option(
    "--buffer-pages", default=1024, show_default=True, help="ring/perf buffer size in pages"
)
@click.option(
    "--perf-buffer", is_flag=True, help="use the perf buffer even where the ring buffer exists"
)
@click.option(
    "--workload-result",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="JSON the workload writes about itself (e.g. bytes and seconds per run), "
    "stored in the trace's metadata when the command ends",
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
    keep_addresses,
    duration,
    catalog,
    buffer_pages,
    perf_buffer,
    workload_result,
    command,
) -> None:
    """Record DMA/IOMMU and CUDA events while COMMAND runs (or for -p PID, or -a).

    \b
      sudo iommu-trace record -o run.iot -- python my_workload.py --args
      sudo iommu-trace record -a -d 10 -o idle.iot
    Exits with the command's exit status; the trace is finalized on Ctrl-C,
    SIGTERM, or when the command exits or crashes.
    """
    from .tracer import recorder

    if not command and pid is None and not follow_all:
        raise UserError("give a command (after --), -p PID, or -a for system-wide")
    opts = recorder.Options(
        output=output,
        command=list(command),
        pid=pid,
        follow_all=follow_all,
        as_root=as_root,
        enable=_probe_set(enable),
        disable=_probe_set(disable),
        uprobes=list(uprobes),
        keep_addresses=keep_addresses,
        duration=duration,
        catalog=catalog,
        buffer_pages=buffer_pages,
        perf_buffer=perf_buffer,
        workload_result=workload_result,
    )
    try:
        code = recorder.main_record(opts)
    except recorder.RecordError as e:
        raise UserError(str(e)) from None
    sys.exit(code)


# ------------------------------------------------------------------ reading traces


def load_trace(path: str):
    """Load a trace or fail with one line; every reader command goes through here."""
    from .tracefile.reader import TraceError, load

    try:
        trace = load(path)
    except TraceError as e:
        raise UserError(str(e)) from None
    for note in trace.notes:
        click.echo(f"iommu-trace: note: {note}", err=True)
    return trace


@cli.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def info(trace, fmt) -> None:
    """What a trace holds: command, kernel, IOMMU mode, probes, counts, drops."""
    from .analysis import summary

    t = load_trace(trace)
    s = summary.summarize(t)
    click.echo(summary.to_json(s) if fmt == "json" else summary.to_text(s))


@cli.command()
@click.option(
    "--catalog", type=click.Path(exists=True, dir_okay=False), help="another probe catalog"
)
@click.option(
    "-v", "--verbose", is_flag=True, help="show every fallback target and why it was passed over"
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-c",
    "--command",
    "command",
    default=None,
    help="the workload's interpreter/command, to find the libraries it brings (e.g. python3)",
)
def probes(catalog, verbose, fmt, command) -> None:
    """The probe catalog, and which probes this kernel and its libraries offer."""
    import json

    from .probes import catalog as cat_mod
    from .probes import discover

    try:
        cat = cat_mod.load(catalog)
    except (cat_mod.CatalogError, OSError) as e:
        raise UserError(f"probe catalog: {e}") from None
    if discover.tracefs(mount=True) is None:
        click.echo(
            "iommu-trace: note: tracefs is not readable (run as root to see tracepoints "
            "and kprobes); kernel probes show as absent",
            err=True,
        )
    resolved = discover.resolve(cat, command=[command] if command else None, mount=False)
    if fmt == "json":
        click.echo(json.dumps([r.as_meta() for r in resolved], indent=2))
        return
    rows = [("GROUP", "PROBE", "STATUS", "TARGET / REASON")]
    for r in resolved:
        detail = r.target.describe() if r.target else r.reason
        if r.paths:
            detail += " in " + ", ".join(r.paths)
        rows.append((r.probe.group, r.probe.name, r.status, detail))
        if verbose:
            rows.extend(("", "", "", f"  passed over {s}") for s in r.skipped)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for g, n, st, d in rows:
        click.echo(f"{g:<{w0}}  {n:<{w1}}  {st:<{w2}}  {d}")


from .lab.commands import lab  # noqa: E402

cli.add_command(lab)
from .system.commands import doctor, topo  # noqa: E402

cli.add_command(doctor)
cli.add_command(topo)
from .analysis.commands import compare, report  # noqa: E402

cli.add_command(report)
cli.add_command(compare)
from .bench.commands import bench  # noqa: E402

cli.add_command(bench)
from .analysis.overhead import overhead  # noqa: E402

cli.add_command(overhead)
from .analysis.commands_graph import callgraph, calls, export  # noqa: E402

cli.add_command(callgraph)
cli.add_command(calls)
cli.add_command(export)


def main() -> None:
    try:
        cli(prog_name="iommu-trace")
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        # A file the user named could not be read or written (any command):
        # the path and the reason are the whole story.
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"iommu-trace: {where}{e.strerror or e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
