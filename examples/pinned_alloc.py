"""Pinned-memory allocation, registration, copies and free: the CUDA calls that map host memory.

    sudo iommu-trace record -o alloc.iot -- python examples/pinned_alloc.py
    sudo iommu-trace record -o alloc.iot -- python examples/pinned_alloc.py --lib torch
    sudo iommu-trace record -o alloc.iot -- python examples/pinned_alloc.py --lib cudart

--lib cudart calls libcudart itself through ctypes (cudaMallocHost,
cudaHostRegister, cudaMemcpy, cudaFreeHost by those names); cupy and torch
allocate pinned memory with cudaHostAlloc(n, 0), which is the same thing.

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


def _load_cudart() -> ctypes.CDLL:
    import glob
    import site

    names = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
    dirs = [f"{s}/nvidia/*/lib" for s in site.getsitepackages()] + ["/usr/local/cuda/lib64"]
    for pattern in [f"{d}/{n}" for d in dirs for n in names]:
        for path in glob.glob(pattern):
            return ctypes.CDLL(path)
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            pass
    raise ImportError("libcudart not found (install a CUDA runtime or torch)")


def with_cudart(args) -> None:
    rt = _load_cudart()
    vp = ctypes.c_void_p

    def check(rc: int, what: str) -> None:
        if rc != 0:
            raise SystemExit(f"pinned_alloc: {what} failed with cudaError {rc}")

    dev = vp()
    check(rt.cudaMalloc(ctypes.byref(dev), ctypes.c_size_t(max(SIZES))), "cudaMalloc")
    check(rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
    h2d, d2h = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
    mark("malloc-host")
    ptrs = []
    for n in SIZES:
        for _ in range(args.repeat):
            p = vp()
            check(rt.cudaMallocHost(ctypes.byref(p), ctypes.c_size_t(n)), "cudaMallocHost")
            ptrs.append((p, n))
    mark("copies-pinned")
    for p, n in ptrs:
        check(rt.cudaMemcpy(dev, p, ctypes.c_size_t(n), h2d), "cudaMemcpy")
        check(rt.cudaMemcpy(p, dev, ctypes.c_size_t(n), d2h), "cudaMemcpy")
    mark("free-host")
    for p, _ in ptrs:
        check(rt.cudaFreeHost(p), "cudaFreeHost")
    mark("host-register")
    bufs = [mmap.mmap(-1, n) for n in SIZES]
    addrs = [vp(ctypes.addressof(ctypes.c_char.from_buffer(b))) for b in bufs]
    for a, n in zip(addrs, SIZES, strict=True):
        check(rt.cudaHostRegister(a, ctypes.c_size_t(n), 0), "cudaHostRegister")
        check(rt.cudaMemcpy(dev, a, ctypes.c_size_t(n), h2d), "cudaMemcpy")
    mark("host-unregister")
    for a in addrs:
        check(rt.cudaHostUnregister(a), "cudaHostUnregister")
    check(rt.cudaFree(dev), "cudaFree")
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
    ap.add_argument("--lib", choices=["cupy", "torch", "cudart"], default="cupy")
    ap.add_argument("--repeat", type=int, default=2, help="allocations of each size")
    args = ap.parse_args()
    try:
        {"cupy": with_cupy, "torch": with_torch, "cudart": with_cudart}[args.lib](args)
    except ImportError as e:
        raise SystemExit(f"pinned_alloc: {args.lib} is not installed ({e})") from None


if __name__ == "__main__":
    main()
