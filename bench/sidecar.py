"""Where results go: beside the trace being recorded, so `overhead TRACE` finds them.

A workload run as `iommu-trace record -o T.iot -- CMD` cannot be told T by the
recorder, so it looks for it: the nearest ancestor process whose command line is
an `iommu-trace record` (or `python -m iommu_trace.cli record`) gives its -o/--output.
"""

from __future__ import annotations

import os

from ..system.procfs import stat_fields


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int:
    rest = stat_fields(pid)
    try:
        return int(rest[1]) if rest else 0
    except (ValueError, IndexError):
        return 0


def record_output(argv: list[str]) -> str | None:
    """The -o of a recorder command line, or None if argv is not `... record ...`."""
    try:
        i = argv.index("record")
    except ValueError:
        return None
    if not any("iommu-trace" in a or "iommu_trace" in a or a.endswith("/iot") for a in argv[:i]):
        return None
    out = "trace.iot"  # the recorder's default
    args = argv[i + 1 :]
    for j, a in enumerate(args):
        if a == "--":
            break
        if a in ("-o", "--output") and j + 1 < len(args):
            out = args[j + 1]
        elif a.startswith("--output="):
            out = a.split("=", 1)[1]
        elif a.startswith("-o") and len(a) > 2:
            out = a[2:]
    return out


def recording_trace(pid: int | None = None) -> str | None:
    """The trace path of the `iommu-trace record` this process runs under, if any."""
    pid = os.getppid() if pid is None else pid
    for _ in range(16):  # sudo, shells and wrappers can sit in between
        if pid <= 1:
            return None
        out = record_output(_cmdline(pid))
        if out is not None:
            # relative to the recorder's cwd; the command inherited it, so ours is a fallback
            try:
                base = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                base = os.getcwd()
            return os.path.normpath(os.path.join(base, out))
        pid = _ppid(pid)
    return None


def sidecar_path(suffix: str, explicit: str | None = None) -> str | None:
    """explicit, else TRACE + suffix when recorded, else None."""
    if explicit:
        return explicit
    trace = recording_trace()
    return trace + suffix if trace else None
