"""The benchmark's CUDA calls, through CuPy's runtime bindings (cudaMemcpy, events, hostAlloc)."""

from __future__ import annotations

from .memcpy import BenchError


def _pci_name(bus_id: str) -> str:
    """CUDA's '00000000:06:00.0' -> the kernel's '0000:06:00.0' (the trace's dev column)."""
    parts = bus_id.strip().lower().split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    try:
        return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
    except (ValueError, IndexError):
        return bus_id.strip().lower()


class CupyBackend:
    def __init__(self, device_index: int = 0) -> None:
        try:
            import cupy  # noqa: PLC0415 - optional: only this command needs it
            from cupy.cuda import runtime as rt  # noqa: PLC0415
        except ImportError:
            raise BenchError(
                "bench memcpy needs CuPy: pip install cupy-cuda12x (or cupy-cuda13x)"
            ) from None
        try:
            n = rt.getDeviceCount()
        except Exception as e:  # CUDARuntimeError without a driver/GPU
            raise BenchError(f"no CUDA GPU usable here ({e})") from None
        if n <= device_index:
            raise BenchError(f"no CUDA GPU {device_index} here ({n} found)")
        self.cp, self.rt = cupy, rt
        cupy.cuda.Device(device_index).use()
        props = rt.getDeviceProperties(device_index)
        name = props.get("name", b"")
        self.device = name.decode() if isinstance(name, bytes) else str(name)
        try:
            self.pci = _pci_name(rt.deviceGetPCIBusId(device_index))
        except Exception:
            self.pci = ""
        self._host: list[tuple[int, bool, object]] = []
        self._dev: list[int] = []
        self._ev = (cupy.cuda.Event(), cupy.cuda.Event())
        self._streams: dict[str, object] = {}

    def host_alloc(self, nbytes: int, pinned: bool) -> int:
        try:
            if pinned:
                ptr = self.rt.hostAlloc(nbytes, 0)  # cudaHostAllocDefault = cudaMallocHost
                self._host.append((ptr, True, None))
                return ptr
            import numpy as np  # noqa: PLC0415

            buf = np.empty(nbytes, dtype=np.uint8)
            buf.fill(0x5A)  # touch every page: no first-touch faults inside the timing
            self._host.append((buf.ctypes.data, False, buf))
            return buf.ctypes.data
        except (MemoryError, self.rt.CUDARuntimeError) as e:
            kind = "pinned" if pinned else "pageable"
            raise BenchError(
                f"cannot allocate {nbytes >> 20} MiB of {kind} host memory ({e}); "
                "use smaller --sizes or fewer --regions"
            ) from None

    def dev_alloc(self, nbytes: int) -> int:
        try:
            ptr = self.rt.malloc(nbytes)
        except self.rt.CUDARuntimeError as e:
            raise BenchError(f"cannot allocate {nbytes >> 20} MiB on the GPU ({e})") from None
        self.rt.memset(ptr, 0x33, nbytes)
        self._dev.append(ptr)
        return ptr

    def stream(self, mode: str):
        if mode == "sync":  # cudaMemcpy runs on the legacy default stream
            return self.cp.cuda.Stream.null
        if "async" not in self._streams:
            self._streams["async"] = self.cp.cuda.Stream(non_blocking=True)
        return self._streams["async"]

    def copy(self, dst: int, src: int, n: int, direction: str, mode: str, stream) -> None:
        kind = self.rt.memcpyHostToDevice if direction == "h2d" else self.rt.memcpyDeviceToHost
        if mode == "sync":
            self.rt.memcpy(dst, src, n, kind)
        else:
            self.rt.memcpyAsync(dst, src, n, kind, stream.ptr)

    def start(self, stream) -> None:
        self._ev[0].record(stream)

    def stop(self, stream) -> float:
        self._ev[1].record(stream)
        self._ev[1].synchronize()
        return self.cp.cuda.get_elapsed_time(self._ev[0], self._ev[1]) * 1e3

    def release(self) -> None:
        self.rt.deviceSynchronize()
        for ptr, pinned, _ in self._host:
            if pinned:
                self.rt.freeHost(ptr)
        for ptr in self._dev:
            self.rt.free(ptr)
        self._host, self._dev = [], []
