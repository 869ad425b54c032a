"""Pinned-memory allocation, registration, copies and free: the CUDA calls that map host memory.

    sudo iommu-trace record -o alloc.iot -- python examples/pinned_alloc.py
    sudo iommu-trace record -o alloc.iot -- python examples/pinned_alloc.py --lib torch

Each phase prints a marker line with a monotonic timestamp, so a trace's
events can be told apart by phase.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import time

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20]


def mark(phase: str) -> None:
    print(f"phase {phase} t_mono_ns={time.monotonic_ns()}", flush=True)


def with_cupy(args) -> None:
    import cupy as cp
    from cupy.cuda import runtime as rt

    cp.cuda.Device(0).use()
    dev = cp.empty(max(SIZES), dtype=cp.uint8)  # context and device buffer first
    rt.deviceSynchronize()
    # CuPy's runtime module has no mallocHost: cudaHostAlloc with flags 0
    # (cudaHostAllocDefault) is what cudaMallocHost does.
    malloc_host = getattr(rt, "mallocHost", None) or (lambda n: rt.hostAlloc(n, 0))
    mark("malloc-host")
    ptrs = [(malloc_host(n), n) for n in SIZES for _ in range(args.repeat)]
    mark("copies-pinned")
    for p, n in ptrs:
        rt.memcpy(dev.data.ptr, p, n, rt.memcpyHostToDevice)
        rt.memcpy(p, dev.data.ptr, n, rt.memcpyDeviceToHost)
    mark("free-host")
    for p, _ in ptrs:
        rt.freeHost(p)
    mark("host-register")
    bufs = [mmap.mmap(-1, n) for n in SIZES]
    addrs = [ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in bufs]
    for a, n in zip(addrs, SIZES, strict=True):
        rt.hostRegister(a, n, 0)
        rt.memcpy(dev.data.ptr, a, n, rt.memcpyHostToDevice)
    mark("host-unregister")
    for a in addrs:
        rt.hostUnregister(a)
    mark("copies-pageable")
    for a, n in zip(addrs, SIZES, strict=True):
        rt.memcpy(dev.data.ptr, a, n, rt.memcpyHostToDevice)
        rt.memcpy(a, dev.data.ptr, n, rt.memcpyDeviceToHost)
    mark("managed")
    m = rt.mallocManaged(1 << 20)
    rt.memset(m, 1, 1 << 20)
    rt.deviceSynchronize()
    rt.free(m)
    mark("done")


def with_torch(args) -> None:
    import torch

    dev = torch.empty(max(SIZES), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    mark("malloc-host")
    # torch caches pinned blocks; empty_cache-like release happens at exit.
    host = [
        torch.empty(n, dtype=torch.uint8, pin_memory=True)
        for n in SIZES
        for _ in range(args.repeat)
    ]
    mark("copies-pinned")
    for h in host:
        dev[: h.numel()].copy_(h, non_blocking=False)
        h.copy_(dev[: h.numel()])
    torch.cuda.synchronize()
    mark("free-host")
    del host
    torch._C._host_emptyCache()
    mark("done")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", choices=["cupy", "torch"], default="cupy")
    ap.add_argument("--repeat", type=int, default=2, help="allocations of each size")
    args = ap.parse_args()
    try:
        (with_cupy if args.lib == "cupy" else with_torch)(args)
    except ImportError as e:
        raise SystemExit(f"pinned_alloc: {args.lib} is not installed ({e})") from None


if __name__ == "__main__":
    main()
