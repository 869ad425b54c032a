"""Stack frames: parsing `function [object]`, readable labels, and the layer each belongs to.

The layers are the ones the pinned-memory path crosses, top to bottom:
application -> CUDA runtime -> CUDA driver -> syscall -> nvidia.ko / nvidia_uvm.ko
-> kernel DMA API -> IOMMU/IOVA. Everything else in the kernel is "kernel".
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass

_FRAME = re.compile(r"^(?P<fn>.*) \[(?P<obj>[^\[\]]*)\]$")
_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?$")
# GCC clone suffixes (.constprop.0, .isra.0, .part.0, .cold): same source function.
_CLONE = re.compile(r"(\.(constprop|isra|part|cold|lto_priv|localalias)(\.\d+)?)+$")
_CUDA_API = re.compile(r"^(cu|cuda)[A-Z]\w*$")


@dataclass(frozen=True)
class Layer:
    key: str
    title: str
    fill: str
    border: str


# One colour per layer (ColorBrewer "Paired" light tones: distinct in print and for
# the common colour-vision deficiencies when read with the legend).
LAYERS: dict[str, Layer] = {
    layer.key: layer
    for layer in (
        Layer("app", "application", "#ffffff", "#737373"),
        Layer("cuda_runtime", "CUDA runtime (libcudart)", "#a6cee3", "#1f78b4"),
        Layer("cuda_driver", "CUDA driver (libcuda)", "#b2df8a", "#33a02c"),
        Layer("syscall", "system call", "#fdbf6f", "#ff7f00"),
        Layer("nvidia", "nvidia.ko", "#cab2d6", "#6a3d9a"),
        Layer("nvidia_uvm", "nvidia_uvm.ko", "#fb9a99", "#e31a1c"),
        Layer("dma_api", "kernel DMA API", "#ffff99", "#b15928"),
        Layer("iommu", "IOMMU / IOVA", "#8dd3c7", "#01665e"),
        Layer("kernel", "kernel (other)", "#e0e0e0", "#737373"),
    )
}
LAYER_ORDER = list(LAYERS)

_SYSCALL_FNS = {
    "entry_SYSCALL_64_after_hwframe",
    "entry_SYSCALL_64",
    "do_syscall_64",
    "x64_sys_call",
    "__x64_sys_ioctl",
    "__se_sys_ioctl",
    "__do_sys_ioctl",
    "ksys_ioctl",
    "do_vfs_ioctl",
    "vfs_ioctl",
}
_IOMMU = re.compile(
    r"^(__)?(iommu|intel_iommu|amd_iommu|arm_smmu|iova|alloc_iova|free_iova|queue_iova|"
    r"fq_|iommu_dma|__iommu_dma|qi_|domain_|__domain_|cache_tag_|iotlb|dmar_|"
    r"iommu_v1_|iommu_v2_|__arm_lpae|arm_lpae|pfn_to_dma_pte|dma_pte_|intel_flush|"
    r"flush_iotlb|iommu_flush|viommu_|virtio_iommu)"
)
_DMA_API = re.compile(
    r"^(__)?(dma_|debug_dma_|swiotlb_|__swiotlb|dma_direct_|__dma_direct|sg_alloc_table|"
    r"__sg_alloc_table)"
)


@dataclass(frozen=True)
class Frame:
    """One stack frame: `fn` as recorded (offset dropped), `obj` its library or module."""

    fn: str
    obj: str
    kernel: bool

    @property
    def key(self) -> str:
        return f"{self.fn} [{self.obj}]"

    @property
    def unknown(self) -> bool:
        return self.fn in ("[unknown]", "") or self.obj == "?"


def parse(raw: str, kernel: bool) -> Frame:
    m = _FRAME.match(raw)
    fn, obj = (m["fn"], m["obj"]) if m else (raw, "kernel" if kernel else "?")
    return Frame(_OFFSET.sub("", fn.strip()), obj, kernel)


def base_name(fn: str) -> str:
    """The function as written in source: clone suffixes and C++ arguments dropped."""
    return _CLONE.sub("", _strip_args(fn))


def is_cuda_api(fr: Frame) -> bool:
    """An exported CUDA entry point (cuMemHostAlloc, cudaHostAlloc, ...)."""
    return not fr.kernel and bool(_CUDA_API.match(fr.fn)) and layer_of(fr) != "app"


def layer_of(fr: Frame) -> str:
    fn, obj = fr.fn, fr.obj
    if fr.kernel:
        if obj == "nvidia_uvm":
            return "nvidia_uvm"
        if obj.startswith("nvidia"):
            return "nvidia"
        if obj != "kernel":
            return "kernel"
        if fn in _SYSCALL_FNS:
            return "syscall"
        if _IOMMU.match(fn):
            return "iommu"
        if _DMA_API.match(fn):
            return "dma_api"
        return "kernel"
    if obj.startswith("libcuda.so") or obj.startswith("libcuda-"):
        return "cuda_driver"
    if obj.startswith("libcudart") or fn.startswith("libcudart_static_"):
        return "cuda_runtime"
    # cudart linked statically into another object (cupy's runtime module): its
    # exported entry points keep their cuda* names.
    if fn.startswith("cuda") and _CUDA_API.match(fn):
        return "cuda_runtime"
    if obj.startswith("libc.so") and fn in ("ioctl", "__ioctl", "syscall"):
        return "syscall"
    return "app"


# ------------------------------------------------------------------ labels


def short_object(obj: str, kernel: bool) -> str:
    if kernel:
        return "vmlinux" if obj == "kernel" else f"{obj}.ko"
    obj = re.sub(r"\.cpython-\d+[^.]*", "", obj)  # runtime.cpython-312-x86_64-linux-gnu.so
    return re.sub(r"(\.so)(\.\d+)+$", r"\1", obj)  # libcuda.so.580.159.04


def label(fr: Frame, width: int = 34) -> str:
    """A readable function name: demangled, arguments/templates/clone suffixes dropped."""
    fn = fr.fn
    if fn.startswith("_Z"):
        fn = demangle(fn)
    if fn.startswith("libcudart_static_"):
        return "cudart (internal)"
    if fn.startswith("__pyx_"):
        fn = _cython(fn)
    fn = base_name(fn)
    fn = fn.replace("(anonymous namespace)::", "")
    fn = _strip_templates(fn)
    parts = fn.split("::")
    if len(parts) > 2:  # keep Class::method
        parts = parts[-2:]
    fn = "::".join(parts)
    if len(fn) > width and len(parts) == 2:  # Class:: on its own line
        return "\n".join(_cut(p, width) for p in (parts[0] + "::", parts[1]))
    return _cut(fn, width)


def _cut(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _strip_args(fn: str) -> str:
    if not fn.endswith(")"):
        return fn
    depth = 0
    for i in range(len(fn) - 1, -1, -1):
        c = fn[i]
        depth += c == ")"
        depth -= c == "("
        if depth == 0:
            return fn[:i] if i > 0 else fn
    return fn


def _strip_templates(fn: str) -> str:
    out, depth = [], 0
    for c in fn:
        if c == "<":
            if depth == 0:
                out.append("<…>")
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(c)
    return "".join(out)


def _cython(fn: str) -> str:
    """__pyx_f_13cupy_backends_4cuda_3api_7runtime_hostAlloc -> runtime.hostAlloc (cupy)."""
    m = re.match(r"^__pyx_(?:f|pw|pf|fuse_\d+)_(.*)$", _strip_args(fn))
    if not m:
        return fn
    rest, parts = m.group(1), []
    while (d := re.match(r"^(\d+)", rest)) is not None:
        n = int(d.group(1))
        parts.append(rest[len(d.group(1)) : len(d.group(1)) + n])
        rest = rest[len(d.group(1)) + n :]
        if re.match(r"^_\d", rest):
            rest = rest[1:]
    name = rest.lstrip("_")
    if not parts or not name:
        return fn
    return f"{parts[-1]}.{name}"


@functools.lru_cache(maxsize=4096)
def demangle(sym: str) -> str:
    exe = shutil.which("c++filt")
    if exe is None:
        return sym
    try:
        out = subprocess.run([exe, sym], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return sym
    return out or sym
