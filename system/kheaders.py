"""Which kernel headers BCC will compile against, and whether they fit the running kernel.

The choice itself is the recorder's (iommu_trace.tracer.headers.resolve, run
here with install=False so the doctor changes nothing); this module adds what
the doctor reports on top: the release the tree was built for, and whether
it matches the running kernel.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .fsview import FsView
from .kconfig import kernel_release


def version_tuple(release: str | None) -> tuple[int, ...]:
    """'6.1.0-56-amd64' -> (6, 1, 0, 56); unparseable -> ()."""
    return tuple(int(x) for x in re.findall(r"\d+", release or "")[:4])


def _tree_release(view: FsView, tree: str) -> str | None:
    """The release a headers tree was built for (its utsrelease.h)."""
    tree = tree.lstrip("/")
    uts = view.read_text(f"{tree}/include/generated/utsrelease.h")
    m = re.search(r'UTS_RELEASE\s+"([^"]+)"', uts or "")
    return m.group(1) if m else view.read_attr(f"{tree}/include/config/kernel.release")


def _recorder_choice() -> dict[str, Any]:
    try:
        from ..tracer.headers import resolve
    except ImportError as e:
        return {
            "source": None,
            "path": None,
            "note": None,
            "error": f"recorder's header resolver not importable: {e}",
        }
    try:
        h = resolve(install=False)
    except Exception as e:  # HeadersMissing, or an OSError from an odd /lib/modules
        return {"source": None, "path": None, "note": None, "error": str(e)}
    return {"source": h.source, "path": h.path, "note": h.note, "error": None}


def describe(view: FsView) -> dict[str, Any]:
    """{"source", "path", "release", "running", "matches", "note", "error", "env"}.

    source: modules-build | kheaders | distro-package | None (none found).
    "matches" compares major.minor (Debian point releases keep struct layouts);
    None when either side is unknown.
    """
    running = kernel_release(view)
    choice = view.data("kernel_headers", _recorder_choice) or {"error": "not in this snapshot"}
    env = view.data("env_bcc_kernel_source", lambda: os.environ.get("BCC_KERNEL_SOURCE"))
    res: dict[str, Any] = {
        **choice,
        "running": running,
        "release": None,
        "matches": None,
        "env": env,
    }
    if env:  # BCC honours it before anything else
        res.update(source="env BCC_KERNEL_SOURCE", path=env)
    path = res.get("path")
    if res.get("source") == "kheaders":
        res.update(release=running, matches=True)
    elif path:
        res["release"] = _tree_release(view, path)
        rv, hv = version_tuple(running), version_tuple(res["release"])
        if rv and hv:
            res["matches"] = rv[:2] == hv[:2]
    if res["matches"] is False:
        res["mismatch"] = (
            f"headers are for {res['release']} but the kernel is {running}: BCC compiles "
            "against other struct layouts; tracepoint probes are safe, probes that read "
            "kernel structs may read wrong fields"
        )
    return res
