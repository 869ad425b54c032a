"""Find kernel headers for BCC, in the order the issue asks for, and say which."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass


class HeadersMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Headers:
    source: str  # "modules-build" | "kheaders" | "distro-package"
    path: str
    note: str


KCONFIG = "include/linux/kconfig.h"


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release)[:3])


def nearest_distro_tree(release: str, root: str = "/usr/src") -> tuple[str, str] | None:
    """(build tree, common tree) of the installed Debian headers closest to this kernel."""
    trees = [
        p for p in glob.glob(os.path.join(root, "linux-headers-*")) if not p.endswith("-common")
    ]
    trees = [p for p in trees if os.path.exists(os.path.join(p, "Makefile"))]
    if not trees:
        return None
    want = _version_key(release)

    def distance(p: str) -> tuple[int, ...]:
        have = _version_key(os.path.basename(p).removeprefix("linux-headers-"))
        return tuple(abs(a - b) for a, b in zip(want, have, strict=False))

    best = min(trees, key=distance)
    # the flavour is the last dash-part: linux-headers-6.1.0-57-amd64 and (backports)
    # linux-headers-6.12.95+deb12-amd64 have their common tree beside them
    common = os.path.join(root, os.path.basename(best).rsplit("-", 1)[0] + "-common")
    return best, common if os.path.isdir(common) else best


def resolve(
    release: str | None = None,
    install: bool = True,
    modules: str = "/lib/modules",
    src: str = "/usr/src",
    kheaders: str = "/sys/kernel/kheaders.tar.xz",
) -> Headers:
    """Headers BCC will compile against; links a distro tree into /lib/modules if needed."""
    release = release or os.uname().release
    build = f"{modules}/{release}/build"
    source = f"{modules}/{release}/source"
    # BCC needs include/linux/kconfig.h in build or source (Debian keeps it in the common
    # tree); a link of ours that misses it (an older release's naming) is made again below
    complete = any(os.path.exists(os.path.join(d, KCONFIG)) for d in (build, source))
    if (complete or not os.path.islink(build)) and (
        os.path.exists(os.path.join(build, "Makefile"))
        or os.path.isdir(os.path.join(build, "include"))
    ):
        return Headers("modules-build", os.path.realpath(build), f"{build}")
    if os.path.exists(kheaders):
        # BCC unpacks this itself when /lib/modules/.../build is missing.
        return Headers("kheaders", kheaders, "CONFIG_IKHEADERS archive")
    tree = nearest_distro_tree(release, src)
    if tree is None:
        raise HeadersMissing(
            f"no kernel headers for {release}: install them "
            "(Debian: apt-get install linux-headers-amd64; Ubuntu: linux-headers-$(uname -r))"
        )
    b, common = tree
    note = f"{os.path.basename(b)} (nearest installed version to {release})"
    if install:
        if os.geteuid() != 0:
            raise HeadersMissing(
                f"headers {b} exist but {build} does not, and linking it needs root"
            )
        os.makedirs(f"{modules}/{release}", exist_ok=True)
        for name, dest in (("build", b), ("source", common)):
            link = f"{modules}/{release}/{name}"
            if os.path.islink(link):
                os.unlink(link)
            if not os.path.exists(link):
                os.symlink(dest, link)
        note += f"; linked into {modules}/{release}"
    return Headers("distro-package", b, note)
