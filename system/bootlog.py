"""Kernel boot-log lines, read without blocking and without failing.

/dev/kmsg is preferred (structured, needs no subprocess); `dmesg` is the
fallback.  Both are refused to non-root users when kernel.dmesg_restrict=1,
which is the Debian default: the caller then gets no lines and a reason.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess

# A kmsg record: "prio,seq,usec,flags[,more];message" then optional " KEY=v" lines.
_KMSG_RECORD = re.compile(rb"^(\d+),(\d+),(\d+),[^;]*;(.*)$")


def _read_kmsg(limit: int = 200_000) -> list[str]:
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    lines: list[str] = []
    try:
        while len(lines) < limit:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break  # EAGAIN: the whole ring buffer has been read
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue  # record overwritten while we read: skip it
                raise
            if not rec:
                break
            m = _KMSG_RECORD.match(rec.split(b"\n", 1)[0])
            if m:
                usec = int(m.group(3))
                text = m.group(4).decode("utf-8", "replace")
                lines.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {text}")
    finally:
        os.close(fd)
    return lines


def _read_dmesg_cmd() -> list[str]:
    out = subprocess.run(
        ["dmesg"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if out.returncode != 0:
        raise PermissionError(out.stderr.strip().splitlines()[-1] if out.stderr else "dmesg failed")
    return out.stdout.splitlines()


def read_boot_log() -> tuple[list[str], str | None]:
    """All kernel log lines still in the ring buffer, and why none were read (or None)."""
    reasons = []
    try:
        return _read_kmsg(), None
    except OSError as e:
        reasons.append(f"/dev/kmsg: {e.strerror or e}")
    try:
        return _read_dmesg_cmd(), None
    except (OSError, subprocess.SubprocessError) as e:
        reasons.append(f"dmesg: {e}")
    hint = " (kernel.dmesg_restrict=1: run as root)" if os.geteuid() != 0 else ""
    return [], "boot log not readable: " + "; ".join(reasons) + hint


def grep(
    lines: list[str],
    pattern: re.Pattern[str],
    exclude: re.Pattern[str] | None = None,
) -> list[str]:
    """The lines matching `pattern` and not `exclude`."""
    return [ln for ln in lines if pattern.search(ln) and not (exclude and exclude.search(ln))]
