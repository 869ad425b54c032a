"""`bench memcpy`: cudaMemcpy / cudaMemcpyAsync copy latency by region size and access pattern.

Per cell (pattern, size, mode, memory, direction) it runs `warmup` untimed
loops, then `loops` timed ones; a loop is one pass of the pattern's copies:
  sync   one cudaMemcpy after the other (each returns when its copy is done)
  async  every copy as cudaMemcpyAsync on one stream, then one synchronize
Each loop is timed with CUDA events on the stream the copies use, so the time
is the device's, with the host's gaps between synchronous copies included.
The host's CLOCK_MONOTONIC window around the timed loops goes into the results,
so `iommu-trace overhead` can count the DMA/IOMMU events each cell caused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import patterns as pat
from .results import Cell

MODES = ("sync", "async")
MEMORIES = ("pinned", "pageable")
DIRECTIONS = ("h2d", "d2h")


class BenchError(RuntimeError):
    """The benchmark cannot run here; one line for the user."""


class Backend(Protocol):
    """What the runner needs from CUDA (cuda_backend.CupyBackend; a fake in the tests)."""

    device: str
    pci: str

    def host_alloc(self, nbytes: int, pinned: bool) -> int: ...
    def dev_alloc(self, nbytes: int) -> int: ...
    def stream(self, mode: str) -> object: ...
    def copy(self, dst: int, src: int, n: int, direction: str, mode: str, stream) -> None: ...
    def start(self, stream) -> None: ...
    def stop(self, stream) -> float: ...  # microseconds since start(), device time
    def release(self) -> None: ...


@dataclass
class Config:
    sizes: list[int]
    patterns: list[str]
    modes: list[str]
    memories: list[str]
    directions: list[str]
    loops: int = 10
    warmup: int = 2
    regions: int = pat.REGIONS


def _loop(
    be: Backend, p: pat.Pattern, size: int, host: int, dev: int, direction: str, mode: str, stream
) -> None:
    h2d = direction == "h2d"
    for hi, di in zip(p.host, p.dev, strict=True):
        h, d = host + hi * size, dev + di * size
        be.copy(d if h2d else h, h if h2d else d, size, direction, mode, stream)


def run(cfg: Config, be: Backend, progress: Callable[[Cell], None] | None = None) -> list[Cell]:
    """Every cell of cfg, host buffers allocated once per memory kind at the largest size."""
    span = cfg.regions * max(cfg.sizes)
    plist = [pat.make(n, cfg.regions) for n in cfg.patterns]
    cells: list[Cell] = []
    dev = be.dev_alloc(span)
    for memory in cfg.memories:
        host = be.host_alloc(span, pinned=memory == "pinned")
        for direction in cfg.directions:
            for mode in cfg.modes:
                stream = be.stream(mode)
                for p in plist:
                    for size in cfg.sizes:
                        cell = Cell(p.name, size, mode, memory, direction, p.copies)
                        for _ in range(cfg.warmup):
                            be.start(stream)
                            _loop(be, p, size, host, dev, direction, mode, stream)
                            be.stop(stream)
                        cell.t_start_ns = time.monotonic_ns()
                        for _ in range(cfg.loops):
                            be.start(stream)
                            _loop(be, p, size, host, dev, direction, mode, stream)
                            cell.loop_us.append(be.stop(stream))
                        cell.t_end_ns = time.monotonic_ns()
                        cells.append(cell)
                        if progress:
                            progress(cell)
    be.release()
    return cells
