"""Build the lab's scatter-list module (iommu_lab_sg.c, beside this file) for a guest kernel.

Built on the host, where the compiler is fast, against the guest kernel's
headers (/lib/modules/<release>/build, from linux-headers-<release>), into
the lab's shared work directory, where the guest loads it from.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import UserError
from .kernels import headers_dir
from .workloads import SG_MODULE

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{SG_MODULE}.c")


def build(release: str, outdir: str, timeout: float = 300) -> str:
    """Compile the module for `release` in outdir/kmod; returns the .ko path."""
    build_tree = headers_dir(release)
    if build_tree is None:
        raise UserError(
            f"no headers for {release} to build the lab's {SG_MODULE} module: "
            f"apt-get install linux-headers-{release}"
        )
    make = shutil.which("make")
    if make is None:
        raise UserError(
            "make not found (the lab's module is built on the host): apt-get install make"
        )
    src = os.path.join(outdir, "kmod")
    os.makedirs(src, exist_ok=True)
    shutil.copy(SOURCE, src)
    with open(os.path.join(src, "Kbuild"), "w") as f:
        f.write(f"obj-m := {SG_MODULE}.o\n")
    try:
        p = subprocess.run(
            [make, "-s", "-C", build_tree, f"M={src}", "modules"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"building {SG_MODULE} for {release} took over {timeout:.0f} s") from None
    ko = os.path.join(src, f"{SG_MODULE}.ko")
    if p.returncode != 0 or not os.path.exists(ko):
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"make exited {p.returncode}"
        raise UserError(f"building {SG_MODULE} for {release} failed: {last}")
    return ko
