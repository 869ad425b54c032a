"""Pinned host buffers allocated, copied once and freed, round after round.

    sudo iommu-trace record -o loop.iot -- python examples/pinned_loop.py
    sudo iommu-trace record -o loop.iot -- python examples/pinned_loop.py --rounds 200 --mib 4

Each round is cudaHostAlloc(size, 0) (the driver pins the pages and maps them
for the GPU with dma_map_sg: 4 MiB of scattered 4 KiB pages is a 1,024-entry
list), one host-to-device copy, and cudaFreeHost (dma_unmap_sg of the same
list). A trace of it shows whether every free unmaps what its allocation
mapped. Uses CuPy's runtime module (which links cudart statically).
"""

from __future__ import annotations

import argparse
import time


def mark(phase: str) -> None:
    print(f"phase {phase} t_mono_ns={time.monotonic_ns()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--mib", type=int, default=4, help="size of each buffer in MiB")
    args = ap.parse_args()
    import cupy as cp
    from cupy.cuda import runtime as rt

    n = args.mib << 20
    cp.cuda.Device(0).use()
    dev = cp.empty(n, dtype=cp.uint8)  # context and device buffer before the loop
    rt.deviceSynchronize()
    mark("loop")
    for _ in range(args.rounds):
        p = rt.hostAlloc(n, 0)
        rt.memcpy(dev.data.ptr, p, n, rt.memcpyHostToDevice)
        rt.freeHost(p)
    mark("done")


if __name__ == "__main__":
    main()
