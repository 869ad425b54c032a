"""Can this machine run iommu-trace's BPF programs?  Privileges, tracefs, BCC, probe types."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from . import kconfig, kheaders
from .checks import Check
from .fsview import FsView

TRACEFS_MOUNTS = ("sys/kernel/tracing", "sys/kernel/debug/tracing")
# Capability bits (include/uapi/linux/capability.h).
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
# Tracepoint systems the probe catalog uses.
TRACEPOINT_SYSTEMS = ("dma", "iommu")


def _runtime() -> dict[str, Any]:
    """Facts only the live process can know; recorded so snapshots replay them."""
    info: dict[str, Any] = {
        "euid": os.geteuid(),
        "python": sys.executable,
        "venv": sys.prefix != sys.base_prefix,
    }
    try:
        import bcc

        info["bcc"] = {
            "ok": True,
            "version": getattr(bcc, "__version__", None),
            "path": os.path.dirname(bcc.__file__),
            "error": None,
        }
    except Exception as e:  # ImportError, or OSError when libbcc.so is missing
        info["bcc"] = {
            "ok": False,
            "version": None,
            "path": None,
            "error": f"{type(e).__name__}: {e}",
        }
    info["bcc_system_copy"] = os.path.isdir("/usr/lib/python3/dist-packages/bcc")
    return info


def _mount_tracefs() -> dict[str, Any]:
    """Mount tracefs at /sys/kernel/tracing (root only); the outcome is recorded."""
    out = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return {"ok": out.returncode == 0, "error": out.stderr.strip() or None}


def _mounted_tracefs(view: FsView) -> str | None:
    for line in (view.read_text("proc/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "tracefs" and parts[1].lstrip("/") in TRACEFS_MOUNTS:
            return parts[1]
    return None


def _caps(view: FsView) -> int | None:
    for line in (view.read_text("proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def check(view: FsView, mount: bool = True) -> tuple[list[Check], dict[str, Any]]:
    """The BPF checks, and facts the rest of the doctor reuses (tracefs path, config, root)."""
    checks: list[Check] = []
    rt = view.data("runtime", _runtime) or {}
    config, config_src = kconfig.read_config(view)
    release = kconfig.kernel_release(view)
    root = rt.get("euid") == 0 if rt else None  # None: not known (a foreign root)
    caps = _caps(view)

    # -- privileges
    has_bpf_caps = caps is not None and all(caps >> b & 1 for b in (CAP_BPF, CAP_PERFMON))
    if not rt:
        checks.append(
            Check(
                "bpf",
                "privileges",
                "unknown",
                "not this machine's root: privileges, imports and tools are not known",
            )
        )
    elif root:
        checks.append(Check("bpf", "privileges", "ok", "running as root"))
    elif has_bpf_caps:
        checks.append(
            Check(
                "bpf",
                "privileges",
                "warn",
                "not root, but CAP_BPF+CAP_PERFMON "
                "held: BPF loads; tracefs and kprobe_events may still be root-only",
            )
        )
    else:
        checks.append(
            Check(
                "bpf",
                "privileges",
                "fail",
                "not root: recording needs root "
                "(or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); read-only checks below",
                fix="sudo iommu-trace doctor",
            )
        )

    # -- tracefs
    tracefs = _mounted_tracefs(view)
    if tracefs is None and root and mount and view.here:
        res = view.data("tracefs_mount", _mount_tracefs) or {}
        # Re-read through the same view: a saved snapshot then shows the mounted state.
        tracefs = _mounted_tracefs(view) if res.get("ok") else None
        if tracefs:
            checks.append(
                Check("bpf", "tracefs", "ok", f"tracefs was not mounted: mounted it at {tracefs}")
            )
        else:
            checks.append(
                Check(
                    "bpf",
                    "tracefs",
                    "fail",
                    f"tracefs not mounted and mounting failed: {res.get('error')}",
                    fix="mount -t tracefs nodev /sys/kernel/tracing",
                )
            )
    elif tracefs is None:
        # Root can mount it (the recorder does), so that is a caveat, not a blocker.
        checks.append(
            Check(
                "bpf",
                "tracefs",
                "warn" if root else "unknown",
                "tracefs not mounted; the recorder mounts it (so does doctor, unless --no-mount)"
                if root
                else "tracefs not mounted or not visible (root would mount it)",
                fix="mount -t tracefs nodev /sys/kernel/tracing",
            )
        )
    else:
        checks.append(Check("bpf", "tracefs", "ok", f"tracefs mounted at {tracefs}"))
    tdir = (tracefs or "/sys/kernel/tracing").lstrip("/")
    tracefs_readable = bool(view.listdir(tdir))

    # -- BCC
    bcc = rt.get("bcc") or {}
    if bcc.get("ok"):
        checks.append(Check("bpf", "bcc", "ok", f"import bcc works (BCC {bcc.get('version')})"))
    elif rt.get("bcc_system_copy") and rt.get("venv"):
        checks.append(
            Check(
                "bpf",
                "bcc",
                "fail",
                f"bcc is installed for the system Python but "
                f"this virtualenv cannot see it ({bcc.get('error')})",
                fix="recreate the venv with  python3 -m venv --system-site-packages",
            )
        )
    elif bcc:
        checks.append(
            Check(
                "bpf",
                "bcc",
                "fail",
                f"import bcc failed: {bcc.get('error')}",
                fix="apt install python3-bpfcc",
            )
        )

    # -- kernel config basics
    if not config:
        checks.append(
            Check(
                "bpf",
                "kernel config",
                "unknown",
                "kernel config not found "
                "(/proc/config.gz, /boot/config-*): BPF support assumed, not checked",
            )
        )
    else:
        missing = [
            k for k in ("CONFIG_BPF_SYSCALL", "CONFIG_BPF_EVENTS") if not kconfig.enabled(config, k)
        ]
        jit = "JIT on" if kconfig.enabled(config, "CONFIG_BPF_JIT") else "no JIT"
        checks.append(
            Check(
                "bpf",
                "kernel config",
                "fail" if missing else "ok",
                f"{', '.join(missing)} not set"
                if missing
                else f"BPF syscall and BPF events built in ({jit}; {config_src})",
            )
        )

    # -- ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8)
    v = kheaders.version_tuple(release)
    if v:
        ok = v[:2] >= (5, 8)
        checks.append(
            Check(
                "bpf",
                "ringbuf",
                "ok" if ok else "warn",
                f"BPF ring buffer {'available' if ok else 'missing'} "
                f"(kernel {release}; needs 5.8+)"
                + ("" if ok else ": the recorder falls back to perf buffers"),
            )
        )

    # -- BTF
    if view.exists("sys/kernel/btf/vmlinux"):
        checks.append(Check("bpf", "btf", "ok", "kernel BTF at /sys/kernel/btf/vmlinux"))
    else:
        checks.append(
            Check(
                "bpf",
                "btf",
                "info",
                "no /sys/kernel/btf/vmlinux: BCC needs kernel headers (below); no fentry or CO-RE",
            )
        )

    # -- restrictions
    lockdown = view.read_attr("sys/kernel/security/lockdown")
    if lockdown and "[confidentiality]" in lockdown:
        checks.append(
            Check(
                "bpf",
                "lockdown",
                "fail",
                "kernel lockdown=confidentiality: BPF "
                "cannot read kernel memory (kprobe arguments come back empty)",
                fix="boot with lockdown=integrity or disable Secure Boot lockdown",
            )
        )
    elif lockdown:
        checks.append(Check("bpf", "lockdown", "ok", f"lockdown: {lockdown}"))

    # -- headers
    hdr = kheaders.describe(view)
    if hdr.get("path"):
        status = "ok" if hdr.get("matches") is not False else "warn"
        detail = [f"found via {hdr['note']}"] if hdr.get("note") else []
        checks.append(
            Check(
                "headers",
                "kernel headers",
                status,
                f"BCC uses {hdr['path']} ({hdr['source']}, built for {hdr.get('release') or '?'})",
                detail=detail + ([hdr["mismatch"]] if hdr.get("mismatch") else []),
                fix=None
                if status == "ok"
                else (
                    "install the running kernel's headers (Debian kernels: "
                    "linux-headers-$(uname -r)); "
                    "a custom kernel needs its own build tree, or CONFIG_IKHEADERS=y"
                ),
            )
        )
    else:
        checks.append(
            Check(
                "headers",
                "kernel headers",
                "fail",
                hdr.get("error") or "no kernel headers found",
                fix="apt install linux-headers-amd64 (or linux-headers-$(uname -r))",
            )
        )

    # -- probe types
    kprobe_events = view.exists(f"{tdir}/kprobe_events")
    kcfg = kconfig.enabled(config, "CONFIG_KPROBES")
    if kcfg is False:
        checks.append(
            Check(
                "probes",
                "kprobes",
                "fail",
                "kernel built without CONFIG_KPROBES: "
                "kprobe targets (iommu_map, IOTLB flush functions) cannot attach; "
                "catalog probes fall back to tracepoints where they have one",
            )
        )
    elif kprobe_events:
        checks.append(Check("probes", "kprobes", "ok", "kprobes available"))
    elif tracefs_readable:
        checks.append(Check("probes", "kprobes", "fail", f"no /{tdir}/kprobe_events"))
    else:
        checks.append(
            Check(
                "probes",
                "kprobes",
                "unknown" if kcfg is None else "ok",
                "CONFIG_KPROBES=y; tracefs not visible here to confirm"
                if kcfg
                else "tracefs not visible here (needs root)",
            )
        )
    ucfg = kconfig.enabled(config, "CONFIG_UPROBE_EVENTS")
    if ucfg is False:
        checks.append(
            Check(
                "probes",
                "uprobes",
                "fail",
                "kernel built without CONFIG_UPROBE_EVENTS: CUDA library probes cannot attach",
            )
        )
    elif ucfg or view.exists(f"{tdir}/uprobe_events"):
        checks.append(Check("probes", "uprobes", "ok", "uprobes available (CUDA library probes)"))
    if tracefs_readable:
        for system in TRACEPOINT_SYSTEMS:
            events = [
                e for e in view.listdir(f"{tdir}/events/{system}") if e not in ("enable", "filter")
            ]
            checks.append(
                Check(
                    "probes",
                    f"tracepoints {system}:*",
                    "ok" if events else "warn",
                    f"{len(events)} {system}:* tracepoints"
                    if events
                    else f"no {system}:* tracepoints in this kernel"
                    + (
                        " (recent kernels only; kprobes on the DMA API stand in)"
                        if system == "dma"
                        else ""
                    ),
                    detail=[", ".join(events)] if events else [],
                )
            )
    else:
        why = "tracefs not mounted" if tracefs is None else "tracefs not readable (needs root)"
        checks.append(Check("probes", "tracepoints", "unknown", f"{why}: tracepoints not listed"))
    unpriv = view.read_attr("proc/sys/kernel/unprivileged_bpf_disabled")
    facts = {
        "root": root,
        "tracefs": tracefs,
        "config": config,
        "release": release,
        "unprivileged_bpf_disabled": unpriv,
        "runtime": rt,
        "headers": hdr,
    }
    return checks, facts
