"""The running kernel's build configuration (CONFIG_* options)."""

from __future__ import annotations

import gzip
import zlib

from .fsview import FsView


def kernel_release(view: FsView) -> str | None:
    """`uname -r`, read from procfs so saved snapshots carry it."""
    return view.read_attr("proc/sys/kernel/osrelease")


def read_config(view: FsView) -> tuple[dict[str, str], str | None]:
    """CONFIG_* -> value ('y', 'm', '"str"', 'n' for '# ... is not set'), and its source.

    /proc/config.gz is the running kernel's own; /boot/config-$(uname -r) is
    what the distribution shipped for that release.  Source None: not found.
    """
    raw = view.read_bytes("proc/config.gz")
    text, source = None, None
    if raw is not None:
        try:
            text, source = gzip.decompress(raw).decode("utf-8", "replace"), "/proc/config.gz"
        except (OSError, EOFError, zlib.error):
            text = None
    release = kernel_release(view)
    if text is None and release:
        text = view.read_text(f"boot/config-{release}")
        source = f"/boot/config-{release}" if text is not None else None
    return (parse_config(text) if text else {}), source


def parse_config(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            opts[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            opts[line[2 : -len(" is not set")]] = "n"
    return opts


def enabled(config: dict[str, str], key: str) -> bool | None:
    """True for =y/=m, False when unset or 'n', None when the config is unknown."""
    if not config:
        return None
    return config.get(key, "n") in ("y", "m")
