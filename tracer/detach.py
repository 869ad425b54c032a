"""Taking the probes down when the trace is complete, without making the user wait.

Closing a uprobe's or raw tracepoint's perf event waits for RCU grace periods in the
kernel (uprobe_unregister, tracepoint_synchronize_unregister): ~1 s for this
catalog's 16 attachments on a 2-vCPU VM, 6-10 s on a 16-core GPU machine, all of it
after the workload ended and the trace was written. So the recorder hands its
attachments' fds to a small process that holds them until the recorder has exited
(its stdin is a pipe whose other end only the recorder holds), then exits itself:
the kernel does the unregistering in that process's exit, which no one waits for.
The recorder's own close of each fd only drops a reference.

BCC made the events through the perf PMUs (/sys/bus/event_source/devices/{kprobe,
uprobe}) where the kernel has them; else it wrote them into tracefs, where only
BCC's cleanup removes them, so then the recorder detaches in place, as before.

The holder is `python -m iommu_trace.tracer.detach FD...`: at EOF it closes its fds
from one thread each, so the uprobe_multi links (tracer/uprobe_links.py) wait out
their grace periods together instead of one after another in the holder's exit.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Callable

from ..system.fds import floor as lift_floor
from ..system.fds import lift
from .uprobe_links import UprobeLinks, close_all

PMUS = "/sys/bus/event_source/devices"
HOLDER = "iommu_trace.tracer.detach"  # the holder's module: python -m HOLDER FD...


def _slots(b) -> list[tuple[dict, object]]:
    """Where BCC keeps its attachments' fds: (table, key) pairs."""
    tables = [*b.kprobe_fds.values(), b.uprobe_fds, b.tracepoint_fds, b.raw_tracepoint_fds]
    return [(t, k) for t in tables for k in t]


def _fds(b, links: UprobeLinks) -> list[int]:
    return [*(t[k] for t, k in _slots(b)), *links.fds]


ATTACHMENTS = ("anon_inode:[perf_event]", "anon_inode:bpf_link")


def lift_attachments(b, links: UprobeLinks) -> list[int]:
    """Every attachment's fd moved above the numbers libbcc's stray close() can hit
    (system/fds.py), and renumbered in BCC's tables (its cleanup closes what they hold)
    and in links. Found in /proc/self/fd, not only in BCC's tables: a second program on
    one tracepoint replaces the first one's fd there."""
    moved: dict[int, int] = {}  # every attachment: old fd -> new
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if _kind(fd) in ATTACHMENTS:
            moved[fd] = lift(fd) if fd < lift_floor() else fd
    for table, key in _slots(b):
        table[key] = moved.get(table[key], table[key])
    links.fds[:] = [moved.get(fd, fd) for fd in links.fds]
    return sorted(moved.values())


def lost(attachments: list[int]) -> int:
    """How many of these attachment fds are no longer attachments (closed by someone
    else, their numbers free or reused)."""
    return sum(_kind(fd) not in ATTACHMENTS for fd in attachments)


def _kind(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _made_by_pmu(b, pmus: str = PMUS) -> bool:
    need = [k for k, fds in (("kprobe", b.kprobe_fds), ("uprobe", b.uprobe_fds)) if fds]
    return all(os.path.isdir(os.path.join(pmus, k)) for k in need)


def hand_off(b, links: UprobeLinks) -> subprocess.Popen | None:
    """The holder process, or None where the probes must be detached in place."""
    fds = _fds(b, links)
    if not fds or not _made_by_pmu(b):
        return None
    r, w = os.pipe()  # w stays open, not inherited, until this process exits
    try:
        holder = subprocess.Popen(
            [sys.executable, "-m", HOLDER, *map(str, fds)],  # at EOF: the recorder is gone
            stdin=r,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=fds,
            start_new_session=True,  # a Ctrl-C at the terminal is not for it
        )
    except OSError:
        os.close(w)
        return None
    finally:
        os.close(r)
    atexit.unregister(b.cleanup)  # BCC's own would close them one by one, waiting
    return holder


def detach(
    b, links: UprobeLinks, holder: subprocess.Popen | None, log: Callable[[str], None]
) -> None:
    """Take the probes down: nothing to do here once handed off, else BCC's cleanup."""
    if holder is not None:
        return
    close_all(links.fds)
    links.fds.clear()
    try:
        b.cleanup()
    except Exception as e:
        # Seen once on an H100 machine (BCC 0.26, kernel 6.18): detach_uprobe_event got
        # EBADF from PERF_EVENT_IOC_DISABLE and raised, so the recorder exited 1 with a
        # traceback after writing a complete trace. The kernel drops what is left when
        # the process exits; BCC's own atexit cleanup would only raise again.
        atexit.unregister(b.cleanup)
        log(f"warning: detaching the probes failed ({e}); the trace is complete")


def holders() -> set[int]:
    """Holder processes running now (any recording's)."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[1:3] == [b"-m", HOLDER.encode()]:
                        out.add(int(name))
            except OSError:
                pass
    return out


def _hold(fds: list[int]) -> None:
    sys.stdin.buffer.read()  # EOF: the recorder has exited
    close_all(fds)


if __name__ == "__main__":
    _hold([int(a) for a in sys.argv[1:]])
