"""`iommu-trace doctor`: can this machine record, what IOMMU mode it runs, what to change.

`diagnose()` returns one JSON-serialisable report; `render_text()` prints it.
Everything is read through an FsView, so `diagnose(root=SNAPSHOT_DIR)` replays
a machine saved with `save(dest)`.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from . import advice, bpfcheck, gpu, iommu, pmu
from .checks import Check
from .fsview import FsView
from .kheaders import version_tuple
from .pci import PciDevice, read_devices

TOOLS = ("dot", "qemu-system-x86_64", "lspci", "bpftool")


def _tools() -> dict[str, str | None]:
    found: dict[str, str | None] = {t: shutil.which(t) for t in TOOLS}
    try:
        import pyroute2  # noqa: F401 - only whether it imports

        found["pyroute2"] = "python"
    except ImportError:
        found["pyroute2"] = None
    return found


def _cpu_vendor(view: FsView) -> str | None:
    m = re.search(r"^vendor_id\s*:\s*(\S+)", view.read_text("proc/cpuinfo") or "", re.MULTILINE)
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}.get(
        m.group(1) if m else ""
    )


def _iommu_checks(
    snap: dict[str, Any],
    devices: list[PciDevice],
) -> tuple[list[Check], list[dict[str, Any]]]:
    by_addr = {d.address: d for d in devices}
    mode = snap["mode"]
    where = f" ({snap['vendor']})" if snap["vendor"] else ""
    params = " ".join(f"{k}={v}" if v else k for k, v in snap["iommu_params"].items())
    detail = [f"kernel parameters: {params}"] if params else []
    kd = snap.get("kernel_default") or {}
    if kd.get("domain"):
        detail.append(
            f"kernel default: {kd['domain']}"
            + (f", {kd['invalidation']} invalidation" if kd.get("invalidation") else "")
            + f" (from {kd['source']})"
        )
    checks = [
        Check(
            "iommu",
            "mode",
            "info",
            f"{mode}{where}: {advice.MODE_MEANING[mode]}",
            detail=detail + snap["notes"],
        )
    ]
    groups = []
    for g in snap["groups"]:
        devs = []
        for addr in g["devices"]:
            d = by_addr.get(addr)
            devs.append(
                {
                    "address": addr,
                    "kind": d.kind if d else None,
                    "label": d.label if d else None,
                    "name": (d.model or d.name) if d else None,
                    "attached": (d.netdevs + d.rdma + d.block) if d else [],
                }
            )
        groups.append(
            {**g, "meaning": advice.GROUP_TYPE_MEANING.get(g["type"] or "", "unknown group type")}
        )
        groups[-1]["devices"] = devs
    # Isolation caveat: GPUs or NICs sharing a group cannot be separated by the IOMMU.
    for g in groups:
        kinds = [d for d in g["devices"] if d["kind"] in ("gpu", "nic", "rdma-nic", "nvme")]
        if len(kinds) > 1:
            checks.append(
                Check(
                    "iommu",
                    f"group {g['group']}",
                    "warn",
                    f"group {g['group']} holds {len(kinds)} devices "
                    f"({', '.join(d['label'] or d['address'] for d in kinds)}): no "
                    "isolation between them, and they can only be passed to a VM "
                    "together (no ACS between them)",
                )
            )
    return checks, groups


def _install(
    checks: list[Check],
    tools: dict[str, Any],
    release: str | None,
) -> list[dict[str, str]]:
    want = []
    by = {c.name: c for c in checks}
    if by.get("bcc") and by["bcc"].status == "fail" and "virtualenv" not in by["bcc"].summary:
        want.append("bcc")
    for key, tool in (("dot", "dot"), ("qemu", "qemu-system-x86_64"), ("pyroute2", "pyroute2")):
        if tools and not tools.get(tool):  # {}: not known (a foreign root)
            want.append(key)
    out = [
        {
            "package": advice.PACKAGES[k][0],
            "why": advice.PACKAGES[k][1],
            "needed": "required" if k == "bcc" else "optional",
        }
        for k in want
    ]
    hdr = by.get("kernel headers")
    # Only a distribution kernel has a headers package; a custom one needs its own tree.
    if (
        hdr
        and hdr.status in ("fail", "warn")
        and release
        and release.endswith(("-amd64", "-arm64", "-cloud-amd64", "-rt-amd64"))
    ):
        out.append(
            {
                "package": f"linux-headers-{release}",
                "why": "headers of the running kernel, for BCC",
                "needed": "required",
            }
        )
    elif hdr and hdr.status == "fail":
        out.append(
            {
                "package": advice.PACKAGES["headers"][0],
                "why": advice.PACKAGES["headers"][1],
                "needed": "required",
            }
        )
    out.sort(key=lambda p: p["needed"] != "required")
    return out


def _virtual(view: FsView) -> bool:
    """A guest: the CPU flags say so (x86 'hypervisor' bit)."""
    return bool(
        re.search(r"^flags\s*:.*\bhypervisor\b", view.read_text("proc/cpuinfo") or "", re.MULTILINE)
    )


def diagnose(root: str = "/", view: FsView | None = None, mount: bool = True) -> dict[str, Any]:
    """The doctor's report. `mount`: as root, mount tracefs when it is missing."""
    view = view or FsView(root)
    checks, facts = bpfcheck.check(view, mount=mount)
    devices = read_devices(view)
    snap = iommu.snapshot(root, view=view)
    iommu_checks, groups = _iommu_checks(snap, devices)
    gpu_checks, gfacts = gpu.check(view, devices)
    checks += iommu_checks + gpu_checks
    pmus = pmu.discover(view)
    checks.append(Check("iommu", "iommu-pmu", "ok" if pmus else "info", pmu.doctor_line(view)))
    tools = view.data("tools", _tools) or {}
    vendor = snap["vendor"] if snap["vendor"] in ("intel", "amd") else _cpu_vendor(view)
    not_seen = [f"{c.name}: {c.summary}" for c in checks if c.status == "unknown"]
    if not facts["root"]:
        not_seen += [n for n in snap["notes"] if "not readable" in n]
    rel = version_tuple(facts["release"])
    virtual = _virtual(view)
    boot_note = None
    if virtual and not snap["present"]:
        boot_note = (
            "this is a VM without a virtual IOMMU: the parameters act on bare metal, or "
            "in a guest given one (QEMU: -device intel-iommu, see `iommu-trace lab`)"
        )
    blocking = any(c.status == "fail" and c.area in ("bpf", "headers") for c in checks)
    partial = any(c.status == "fail" and c.area == "probes" for c in checks)
    return {
        "kernel": facts["release"],
        "root": facts["root"],
        "virtual": virtual,
        "ready": "no" if blocking else ("partial" if partial else "yes"),
        "checks": [c.as_dict() for c in checks],
        "iommu": snap,
        "groups": groups,
        "gpu": gfacts,
        "tools": tools,
        "install": _install(checks, tools, facts["release"]),
        "recommendations": {
            "for": [
                k for k, on in (("gpu", bool(gfacts["gpus"])), ("rdma", bool(gfacts["rdma"]))) if on
            ]
            or ["gpu", "rdma"],
            **{k: v for k, v in advice.RECOMMENDATIONS.items()},
        },
        "boot_params": {
            "vendor": vendor,
            "params": (
                {vendor: advice.BOOT_PARAMS[vendor]}
                if vendor in advice.BOOT_PARAMS
                else {k: advice.BOOT_PARAMS[k] for k in ("intel", "amd", "any")}
            ),
            "note": boot_note,
        },
        "apply": advice.APPLY_DEBIAN,
        "check_after_reboot": advice.CHECK_AFTER_REBOOT,
        "runtime_switch": advice.RUNTIME_SWITCH if rel[:2] >= (5, 11) else None,
        "not_seen": not_seen,
    }


def save(dest: str, mount: bool = False) -> dict[str, Any]:
    """Diagnose this machine and save everything read into `dest` for replay."""
    view = FsView("/", record=True)
    report = diagnose("/", view=view, mount=mount)
    view.save(dest, about={"kernel": report["kernel"], "iommu_mode": report["iommu"]["mode"]})
    return report


# -- text ---------------------------------------------------------------------

_AREAS = (
    ("bpf", "BPF"),
    ("headers", "Kernel headers"),
    ("probes", "Probe types"),
    ("iommu", "IOMMU"),
    ("gpu", "GPU"),
    ("rdma", "RDMA"),
)
_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "--", "unknown": "??"}


# Devices whose groups are listed one by one; the rest are summarised by type.
_DATA_PATH_KINDS = ("gpu", "accelerator", "nic", "rdma-nic", "nvme", "storage")


def _group_lines(groups: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    rest: dict[str, int] = {}
    for g in groups:
        if not any(d["kind"] in _DATA_PATH_KINDS for d in g["devices"]):
            rest[g["type"]] = rest.get(g["type"], 0) + 1
            continue
        devs = ", ".join(
            " ".join([d["address"], d["label"] or d["kind"] or "?", *d["attached"]])
            for d in g["devices"]
        )
        out.append(f"  group {g['group']:<4} {g['type'] or '?':<9} {devs}")
    if rest:
        out.append(
            "  other groups (bridges, chipset, virtio): "
            + ", ".join(f"{n} {t or '?'}" for t, n in sorted(rest.items(), key=str))
        )
    for t in sorted({g["type"] for g in groups if g["type"]}):
        out.append(f"        {t}: {advice.GROUP_TYPE_MEANING.get(t, '?')}")
    return out


def render_text(report: dict[str, Any]) -> str:
    out = [
        f"iommu-trace doctor: kernel {report['kernel']}, "
        + {
            True: "root",
            False: "not root (read-only checks)",
            None: "privileges unknown (not this machine)",
        }[report["root"]],
        {
            "yes": "ready to record",
            "partial": "ready to record, with some probe types missing (see FAIL below)",
            "no": "NOT ready to record (see FAIL below)",
        }[report["ready"]],
    ]
    for area, title in _AREAS:
        checks = [c for c in report["checks"] if c["area"] == area]
        if not checks:
            continue
        out += ["", title]
        for c in checks:
            out.append(f"  {_MARK[c['status']]:<5} {c['name']:<16} {c['summary']}")
            out += [f"        {d}" for d in c["detail"] if d]
            if c["fix"]:
                out.append(f"        fix: {c['fix']}")
        if area == "iommu":
            out += _group_lines(report["groups"])
    if report["install"]:
        out += ["", "Install (Debian)"]
        for needed in ("required", "optional"):
            pkgs = [p for p in report["install"] if p["needed"] == needed]
            if pkgs:
                out.append(
                    f"  {needed + ':':<10} apt install " + " ".join(p["package"] for p in pkgs)
                )
                out += [f"    {p['package']}: {p['why']}" for p in pkgs]
    rec = report["recommendations"]
    out += ["", "Choosing a mode"]
    out += [f"  {t}" for t in rec["trade_off"]]
    for key in rec["for"]:
        out.append(f"  {key.upper()} nodes:")
        out += [f"  - {t}" for t in rec[key]]
    out += ["", "Boot parameters"]
    for vendor, params in report["boot_params"]["params"].items():
        for mode, p in params.items():
            out.append(f"  {vendor:<6} {mode:<12} {p}")
    if report["boot_params"]["note"]:
        out.append(f"  note: {report['boot_params']['note']}")
    out += [f"  then: {a}" for a in report["apply"]]
    if report["runtime_switch"]:
        out.append(f"  or {report['runtime_switch']}")
    out += ["", "Check after reboot"] + [f"  {c}" for c in report["check_after_reboot"]]
    if report["not_seen"]:
        out += ["", "Not seen here"] + [f"  {n}" for n in report["not_seen"]]
    return "\n".join(out) + "\n"
