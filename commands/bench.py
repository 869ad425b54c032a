"""`iommu-trace bench`: microbenchmarks meant to run under `iommu-trace record`."""

from __future__ import annotations

import click

from ..bench import patterns as pat
from ..errors import UserError


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip().lower() for x in text.split(",") if x.strip()]
    if items == ["all"]:
        return list(allowed)
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise click.BadParameter(f"{what}: one or more of {', '.join(allowed)} (or all)")
    return items


def _progress(cell) -> None:
    from ..render.units import human_size

    med = cell.row()["median_us"]
    click.echo(
        f"bench: {cell.pattern} {human_size(cell.size)} {cell.mode} {cell.memory} "
        f"{cell.direction}: {med:.2f} us/copy",
        err=True,
    )


EXAMPLES = (
    "\b\nExamples:\n"
    "  sudo iommu-trace record -o bench.iot -- iommu-trace bench memcpy --sizes 6:24\n"
    "  iommu-trace overhead bench.iot\n"
)


@click.group(epilog=EXAMPLES)
def bench() -> None:
    """Microbenchmarks whose timing windows `iommu-trace overhead` joins with a trace."""


@bench.command("memcpy")
@click.option(
    "--sizes",
    default="6:24",
    show_default=True,
    help="region sizes as log2 exponents: LO:HI[:STEP] or a comma list",
)
@click.option(
    "--patterns",
    "pattern_text",
    default="all",
    show_default=True,
    help=f"comma list of {', '.join(pat.PATTERNS)}, or all",
)
@click.option("--modes", default="sync,async", show_default=True, help="sync, async")
@click.option("--memory", default="pinned,pageable", show_default=True, help="pinned, pageable")
@click.option("--directions", default="h2d,d2h", show_default=True, help="h2d, d2h")
@click.option("--loops", default=10, show_default=True, help="timed loops per cell")
@click.option("--warmup", default=2, show_default=True, help="untimed loops before them")
@click.option("--regions", default=pat.REGIONS, show_default=True, help="regions per buffer")
@click.option("--device", "device_index", default=0, show_default=True, help="CUDA device")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="results file, CSV or (*.json) JSON [default: TRACE.bench.csv beside the trace "
    "when run under `iommu-trace record -o TRACE`]",
)
@click.option("-q", "--quiet", is_flag=True, help="no progress lines")
def memcpy_cmd(
    sizes, pattern_text, modes, memory, directions, loops, warmup, regions, device_index, out, quiet
) -> None:
    """Copy latency by region size and access pattern (CuPy; CUDA-event timing).

    \b
      sudo iommu-trace record -o bench.iot -- iommu-trace bench memcpy --sizes 6:24
      iommu-trace overhead bench.iot
    Patterns (a loop copies each listed region once):
    \b
      single      one region, again and again
      sequential  regions 0..255 in order on both sides
      random-cpu  192 of the 256 host regions in random order
      random-all  host and device regions in random order
    """
    from ..bench import memcpy, results, sidecar
    from ..tracefile.sidecar import BENCH_SUFFIX

    try:
        cfg = memcpy.Config(
            sizes=pat.parse_sizes(sizes),
            patterns=pat.parse_patterns(pattern_text),
            modes=_csv(modes, memcpy.MODES, "--modes"),
            memories=_csv(memory, memcpy.MEMORIES, "--memory"),
            directions=_csv(directions, memcpy.DIRECTIONS, "--directions"),
            loops=loops,
            warmup=warmup,
            regions=regions,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    if loops < 1 or warmup < 0 or regions < 1:
        raise UserError("--loops and --regions must be at least 1, --warmup at least 0")
    dest = sidecar.sidecar_path(BENCH_SUFFIX, out)
    try:
        from ..bench.cuda_backend import CupyBackend

        be = CupyBackend(device_index)
        say = None if quiet else _progress
        cells = memcpy.run(cfg, be, progress=say)
    except memcpy.BenchError as e:
        raise UserError(str(e)) from None
    rows = [c.row(be.device, be.pci) for c in cells]
    click.echo(results.table(rows))
    if dest:
        results.write(dest, rows)
        click.echo(f"bench: {len(rows)} cells on {be.device} written to {dest}", err=True)
    else:
        click.echo(
            "bench: results not saved (not under `iommu-trace record`): give --out", err=True
        )
