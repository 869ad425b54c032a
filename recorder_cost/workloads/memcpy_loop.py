"""4 KiB cudaMemcpy loop: pinned host <-> device, one synchronous copy after another.

    python3 recorder_cost/workloads/memcpy_loop.py --result r.json --seconds 4

CuPy's runtime binding calls cudaMemcpy itself (its statically linked cudart is
what the catalog's per-copy probes attach to), so this is the workload where
per-copy probes cost the most: each copy takes ~10 us, about a uprobe pair.
"""

from __future__ import annotations

import timing  # first: the workload's first instruction

SIZE = 4096


def main() -> None:
    a = timing.parser(__doc__).parse_args()
    import cupy
    from cupy.cuda import runtime

    host = cupy.cuda.alloc_pinned_memory(SIZE)
    dev = cupy.cuda.alloc(SIZE)
    h, d = host.ptr, dev.ptr
    h2d, d2h = runtime.memcpyHostToDevice, runtime.memcpyDeviceToHost
    memcpy = runtime.memcpy

    def step() -> int:
        for _ in range(100):
            memcpy(d, h, SIZE, h2d)
            memcpy(h, d, SIZE, d2h)
        return 200

    timing.run(a, step, "memcpy-4k", "copies", size=SIZE)


if __name__ == "__main__":
    main()
