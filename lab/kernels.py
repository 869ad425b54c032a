"""The guest kernels the lab boots: /boot/vmlinuz-* with modules, chosen by version or path.

The guest loads its modules (9p, nvme, ...) from the host's /lib/modules/<release>,
so only images with their modules count.  `--kernel 6.12` picks the newest
6.12.x; the default is the lab's reference kernel, Debian 12's 6.1 (kprobes and
BTF, no dma:* tracepoints); 6.12 (bookworm-backports) has the dma:* tracepoints.
"""

from __future__ import annotations

import glob
import os
import re

from ..errors import UserError

DEFAULT_KERNEL = "6.1"
BOOT = "/boot"
MODULES = "/lib/modules"
INSTALL_HINT = {
    "6.1": "apt-get install linux-image-amd64 (Debian 12)",
    "6.12": "scripts/setup.sh installs it (linux-image-6.12.*-amd64 from bookworm-backports)",
}


def release_of(image: str) -> str:
    name = os.path.basename(image)
    return name[len("vmlinuz-") :] if name.startswith("vmlinuz-") else name


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release))


def installed(boot: str = BOOT, modules: str = MODULES) -> dict[str, str]:
    """release -> image, for the images whose modules are installed, oldest version first."""
    found = {}
    for path in glob.glob(os.path.join(boot, "vmlinuz-*")):
        release = release_of(path)
        if os.path.isdir(os.path.join(modules, release, "kernel")):
            found[release] = path
    return dict(sorted(found.items(), key=lambda kv: _version_key(kv[0])))


def matches(release: str, version: str) -> bool:
    """'6.1' matches 6.1.0-57-amd64, not 6.12.95+deb12-amd64."""
    if not release.startswith(version):
        return False
    rest = release[len(version) :]
    return rest == "" or rest[0] in ".-+"


def find_kernel(spec: str | None, boot: str = BOOT, modules: str = MODULES) -> str:
    """The image for --kernel: a path, a version prefix (6.1, 6.12, a full release) or None."""
    if spec is not None and (os.sep in spec or spec.startswith("vmlinuz")):
        if not os.path.isfile(spec):
            raise UserError(f"kernel image {spec} not found: apt-get install linux-image-amd64")
        return spec
    have = installed(boot, modules)
    version = spec or DEFAULT_KERNEL
    hits = [path for release, path in have.items() if matches(release, version)]
    if hits:
        return hits[-1]
    if spec is None and have:  # not Debian 12: the newest kernel there is
        return list(have.values())[-1]
    hint = INSTALL_HINT.get(version, "install it, or pass --kernel PATH")
    there = ", ".join(have) or "none"
    raise UserError(
        f"no {boot}/vmlinuz-{version}* with modules in {modules}: {hint} (installed: {there})"
    )


def headers_dir(release: str, modules: str = MODULES) -> str | None:
    """The kernel's build tree (BCC in the guest, the lab's module), if installed."""
    build = os.path.join(modules, release, "build")
    return build if os.path.isfile(os.path.join(build, "Makefile")) else None
