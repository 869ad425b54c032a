"""Keep the recorder's long-lived descriptors out of reach of libbcc's stray close().

BCC before 0.33 (Debian 12 ships 0.26) closes an uninitialized int whenever it builds a
process's symbol cache (ProcSyms::ModulePath for /tmp/perf-PID.map, iovisor/bcc#5193).
The int is what an earlier ModulePath of its own held: a number openat() handed BCC
while it resolved a uprobe or a stack, which by then may be a probe's perf event. Seen
in the lab on 2026-12-07 with a close() watcher: symbolizing an insmod process closed
the `iotlb_sync` kprobe's fd mid-recording, and its counts went silently short
(docs/lab.md). openat() hands out the lowest free numbers, so a descriptor moved to
floor() and up (10,000, or half the open-file limit) is never one of them.
"""

from __future__ import annotations

import fcntl
import os
import resource
from functools import cache

WANTED_FLOOR = 10_000


@cache
def floor() -> int:
    """The first number lifted descriptors take: WANTED_FLOOR, or half the soft limit on
    open files where that is lower (the limit is left alone: the command inherits it)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return WANTED_FLOOR if soft == resource.RLIM_INFINITY else min(WANTED_FLOOR, soft // 2)


def lift(fd: int) -> int:
    """fd moved to the lowest free number >= floor() (close-on-exec); the old number is
    closed. Where no such number is free, fd is kept as it is."""
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor())
    except OSError:
        return fd
    os.close(fd)
    return new
