"""Decide, per kernel and per library, which catalog target each probe attaches to.

Like pwru, probes are chosen from what the machine offers: tracefs events,
/proc/kallsyms and kprobe support for the kernel; ELF symbols of the CUDA
libraries that the workload will load for uprobes. Every probe that does not
attach gets a reason, which the trace keeps.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import btf as btf_mod
from .catalog import Catalog, Probe, Target

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


@dataclass(frozen=True)
class TpField:
    name: str
    offset: int
    size: int
    signed: bool
    data_loc: bool  # __data_loc: a u32 (len << 16 | offset) into the record


@dataclass
class Resolution:
    probe: Probe
    status: str  # attach | absent | disabled | failed
    reason: str = ""
    target: Target | None = None
    paths: list[str] = field(default_factory=list)  # uprobe library files
    tp_fields: dict[str, TpField] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "target: why" for each fallback passed over

    def as_meta(self) -> dict:
        return {
            "name": self.probe.name,
            "group": self.probe.group,
            "op": self.probe.op,
            "scope": self.probe.scope,
            "status": self.status,
            "target": self.target.describe() if self.target else None,
            "path": self.target.path if self.target else None,
            "paths": self.paths,
            "reason": self.reason,
            "skipped": self.skipped,
        }


def tracefs(mount: bool = True) -> str | None:
    """The tracefs mount point; mounts it when we are root and it is missing."""
    for path in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    if mount and os.geteuid() == 0 and os.path.isdir(TRACEFS_CANDIDATES[0]):
        rc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS_CANDIDATES[0]],
            capture_output=True,
        ).returncode
        if rc == 0 and os.path.isdir(os.path.join(TRACEFS_CANDIDATES[0], "events")):
            return TRACEFS_CANDIDATES[0]
    return None


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<s>\d)"
)


def parse_format(text: str) -> dict[str, TpField]:
    out = {}
    for m in _FIELD_RE.finditer(text):
        decl = m["decl"].strip()
        name = re.sub(r"\[.*\]$", "", decl.split()[-1])
        if name.startswith("common_"):
            continue
        out[name] = TpField(
            name=name,
            offset=int(m["off"]),
            size=int(m["size"]),
            signed=m["s"] == "1",
            data_loc="__data_loc" in decl,
        )
    return out


def tracepoint_fields(tp: str, root: str | None) -> dict[str, TpField] | None:
    if root is None:
        return None
    system, _, event = tp.partition(":")
    path = os.path.join(root, "events", system, event, "format")
    try:
        with open(path) as f:
            return parse_format(f.read())
    except OSError:
        return None


@cache
def kallsyms() -> frozenset[str]:
    names = set()
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names)


def kprobes_supported(root: str | None) -> tuple[bool, str]:
    if root is None:
        return False, "tracefs is not mounted"
    if not os.path.exists(os.path.join(root, "kprobe_events")):
        return False, "this kernel has no kprobes (CONFIG_KPROBES off)"
    return True, ""


# ----------------------------------------------------------------- libraries


@cache  # the loader cache does not change while we resolve (one `ldconfig -p`, not one a library)
def _ldconfig() -> dict[str, str]:
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    libs: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "64" in m[2]:  # skip 32-bit copies
            libs.setdefault(m[1], m[3])
    return libs


def _site_dirs(command: list[str] | None) -> list[str]:
    """Python package folders the workload may load CUDA libraries from."""
    dirs: list[str] = []
    if command:
        exe = shutil.which(command[0])
        if exe and "python" in os.path.basename(exe):
            prefix = Path(exe).parent.parent
            dirs += glob.glob(str(prefix / "lib" / "python3*" / "site-packages"))
    dirs += glob.glob("/usr/lib/python3/dist-packages")
    dirs += glob.glob("/usr/local/lib/python3*/dist-packages")
    dirs += glob.glob("/usr/local/lib/python3*/site-packages")
    dirs += glob.glob("/opt/*/.venv/lib/python3*/site-packages")
    return list(dict.fromkeys(dirs))


def find_library(names: list[str], command: list[str] | None = None) -> list[str]:
    """Every distinct file providing one of these sonames (first soname wins per place).

    Names starting with "site:" are globs inside the workload's site-packages,
    for wheels that link a library statically into a module of their own
    (cupy's runtime module carries cudart).
    """
    sonames = [n for n in names if not n.startswith("site:")]
    site_globs = [n.removeprefix("site:") for n in names if n.startswith("site:")]
    found: list[str] = []
    cache_ = _ldconfig()
    fixed_dirs = [
        "/usr/local/nvidia/lib64",
        "/usr/local/cuda/lib64",
        *glob.glob("/usr/local/cuda-*/lib64"),
        "/usr/lib/x86_64-linux-gnu",
    ]
    for soname in sonames:
        if soname in cache_:
            found.append(cache_[soname])
            break
    for d in fixed_dirs:
        for soname in sonames:
            p = os.path.join(d, soname)
            if os.path.exists(p):
                found.append(p)
                break
    for site in _site_dirs(command):
        for soname in sonames:
            hits = glob.glob(os.path.join(site, "nvidia", "*", "lib", soname))
            hits += glob.glob(os.path.join(site, "nvidia", "*", "lib64", soname))
            hits += glob.glob(os.path.join(site, "torch", "lib", soname))
            hits += glob.glob(os.path.join(site, "cupy*", "**", soname), recursive=True)
            if hits:
                found.extend(hits)
                break
        for pattern in site_globs:
            found.extend(glob.glob(os.path.join(site, pattern)))
    real: dict[str, str] = {}
    for p in found:
        real.setdefault(os.path.realpath(p), p)
    return list(real)


def resolve_library(spec: str, catalog: Catalog, command: list[str] | None) -> list[str]:
    if spec in catalog.libraries:
        return find_library(catalog.libraries[spec], command)
    if os.path.sep in spec:
        return [spec] if os.path.exists(spec) else []
    # A bare name like "c" or "libfoo.so.1": ask the loader cache.
    names = [spec] if spec.startswith("lib") else [f"lib{spec}.so.6", f"lib{spec}.so"]
    return find_library(names, command)


@cache
def elf_symbols(path: str) -> frozenset[str]:
    """Function symbols of an ELF file (dynamic and static tables)."""
    try:
        from bcc import BPF  # noqa: PLC0415  (optional at import time)

        pairs = BPF.get_user_functions_and_addresses(path.encode(), b".*")
        return frozenset(n.decode() for n, _ in pairs)
    except Exception:
        pass
    nm = shutil.which("nm")
    if not nm:
        return frozenset()
    out = subprocess.run([nm, "-D", "--defined-only", path], capture_output=True, text=True)
    return frozenset(line.split()[-1].split("@")[0] for line in out.stdout.splitlines() if line)


# ----------------------------------------------------------------- resolution


# Scatter-list members the sg field readers need (dma_length only exists with
# CONFIG_NEED_SG_DMA_LENGTH; without it sg_dma_len() is length).
SG_MEMBERS = ("page_link", "length", "dma_address")


def raw_tracepoint_check(t: Target, btf: btf_mod.BTF | None) -> str | None:
    """Why this raw-tracepoint target cannot be used here, or None."""
    if btf is None:
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux), so the arguments are untyped"
    proto = btf.trace_proto(t.event)
    if proto is None:
        return f"tracepoint {t.name} is not in this kernel's BTF"
    want = [btf_mod.canonical(ctype) for _, ctype in t.args]
    have = [btf_mod.canonical(ctype) for ctype in proto]
    if want != have:
        return f"TP_PROTO here is ({', '.join(proto)}), not the catalog's ({', '.join(want)})"
    names = {n for n, _ in t.args}
    for col, spec in t.fields.items():
        for arg in spec.split(":")[1:] if ":" in spec else [spec]:
            if not arg.isdigit() and arg not in names:
                return f"field {col} reads {arg}, which is not an argument"
    try:
        if any(s.startswith("devname:") for s in t.fields.values()):
            btf.field("device", "kobj.name")
        if any(s.startswith(("sg_", "sgt_")) for s in t.fields.values()):
            for m in SG_MEMBERS:
                btf.field("scatterlist", m)
            btf.field("sg_table", "sgl")
    except btf_mod.BTFError as e:
        return str(e)
    return None


IOMMU_CLASS = "/sys/class/iommu"


def active_iommu_driver(root: str = IOMMU_CLASS) -> tuple[str | None, list[str]]:
    """(intel | amd | other | None, the IOMMU units) from the units the kernel registered."""
    from ..system.iommu import vendor_of  # noqa: PLC0415 (system imports the CLI layer)

    try:
        units = sorted(os.listdir(root))
    except OSError:
        units = []
    return vendor_of(units), units


def driver_check(t: Target, root: str = IOMMU_CLASS) -> str | None:
    """Why a driver-specific target is not for this machine, or None."""
    if t.driver is None:
        return None
    active, units = active_iommu_driver(root)
    if active == t.driver:
        return None
    if active is None:
        return f"no IOMMU driver is active (/sys/class/iommu is empty), so not the {t.driver} one"
    return f"the active IOMMU driver is {active} ({', '.join(units[:3])}), not {t.driver}"


def _check_target(
    t: Target,
    root: str | None,
    catalog: Catalog,
    command: list[str] | None,
    raw: bool = True,
) -> tuple[str | None, list[str], dict[str, TpField]]:
    """(why not, library paths, tracepoint fields); why-not is None when it can attach."""
    why = driver_check(t)
    if why:
        return why, [], {}
    if t.kind == "raw_tracepoint":
        if not raw:
            return "raw tracepoints are off (--no-raw-tracepoints)", [], {}
        if tracepoint_fields(t.name, root) is None:
            return f"tracepoint {t.name} is not in this kernel", [], {}
        return raw_tracepoint_check(t, btf_mod.running()), [], {}
    if t.kind == "tracepoint":
        fields = tracepoint_fields(t.name, root)
        if fields is None:
            return f"tracepoint {t.name} is not in this kernel", [], {}
        for col, spec in t.fields.items():
            name = spec.rpartition(":")[2]  # "sum32:lengths" reads field lengths
            if name not in fields:
                return f"tracepoint {t.name} has no field {name} (for {col})", [], {}
        return None, [], fields
    if t.kind == "syscall":
        enter = tracepoint_fields(f"syscalls:sys_enter_{t.name}", root)
        leave = tracepoint_fields(f"syscalls:sys_exit_{t.name}", root)
        if enter is None or leave is None:
            return f"syscall tracepoints for {t.name} are not in this kernel", [], {}
        return None, [], {**enter, **{"ret": leave["ret"]}}
    if t.kind == "kprobe":
        ok, why = kprobes_supported(root)
        if not ok:
            return why, [], {}
        if t.name not in kallsyms():
            return f"{t.name} is not in /proc/kallsyms (absent or inlined)", [], {}
        return None, [], {}
    if t.kind == "uprobe":
        lib = t.library or ""
        paths = resolve_library(lib, catalog, command)
        if not paths:
            return f"library {lib} not found", [], {}
        paths = [p for p in paths if t.symbol in elf_symbols(p)]
        if not paths:
            return f"{t.symbol} not exported by {lib}", [], {}
        return None, paths, {}
    return f"unknown target kind {t.kind}", [], {}


def resolve(
    catalog: Catalog,
    *,
    enable: set[str] | None = None,
    disable: set[str] | None = None,
    extra: list[Probe] | None = None,
    command: list[str] | None = None,
    mount: bool = True,
    raw: bool = True,
) -> list[Resolution]:
    """Choose a target for every probe. enable/disable hold probe or group names.

    raw=False passes over raw tracepoints, so tracepoints take the record path.
    """
    enable = enable or set()
    disable = disable or set()
    root = tracefs(mount=mount)
    out = []
    for probe in [*catalog.probes, *(extra or [])]:
        wanted = (probe.default or probe.name in enable or probe.group in enable) and not (
            probe.name in disable or probe.group in disable
        )
        if not wanted:
            why = "opt-in: --probe " + probe.name if not probe.default else "disabled by --no-probe"
            out.append(Resolution(probe, "disabled", why))
            continue
        skipped: list[str] = []
        for t in probe.targets:
            why_not, paths, fields = _check_target(t, root, catalog, command, raw)
            if why_not is None:
                out.append(Resolution(probe, "attach", "", t, paths, fields, skipped))
                break
            skipped.append(f"{t.describe()}: {why_not}")
        else:
            out.append(Resolution(probe, "absent", "; ".join(skipped), skipped=skipped))
    return out


_PATH_WHY = {
    "raw_tracepoint": "TP_PROTO arguments typed by the kernel's BTF; no record, no size limit",
    "tracepoint": "the event's record; the kernel withholds one over 8 KiB (counted where it can)",
    "kprobe": "a kprobe on the kernel function (no tracepoint here)",
    "uprobe": "a uprobe on the library function",
    "syscall": "the syscall's enter/exit tracepoints",
}


def path_reason(r: Resolution) -> str:
    """Which path a resolved probe takes, and what that means, in one line."""
    assert r.target is not None
    return f"{r.target.path}: {_PATH_WHY[r.target.kind]}"
