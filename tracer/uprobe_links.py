"""Uprobes as BPF links (BPF_TRACE_UPROBE_MULTI, Linux >= 6.6) instead of perf events.

Why: taking a perf-event uprobe down costs RCU grace periods under the kernel's
event_mutex (perf_uprobe_destroy), so 24 uprobes come down one after another: 2.6 s
on the 2-vCPU CI VM, 5.5-8.8 s on the 16-CPU GPU machine, while a workload followed
with `record -p` runs on beside it (docs/benchmarks.md). A uprobe_multi link's
release takes no such lock: links closed from several threads wait out their grace
periods together (24 closed in 0.07 s on the CI VM, against 1.2 s one by one;
docs/recorder-cost.md). The program is the same one BCC compiled, loaded with the
link's expected attach type.

Where the kernel has no such links (older than 6.6, CONFIG_UPROBES off) the first
attempt says so and every uprobe goes through BCC's perf events, as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections.abc import Iterable

NR_BPF = 321  # x86-64
BPF_LINK_CREATE = 28
BPF_TRACE_UPROBE_MULTI = 48  # enum bpf_attach_type
BPF_F_UPROBE_MULTI_RETURN = 1
# errors that mean "no uprobe_multi links here", not "this uprobe cannot attach"
_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, errno.E2BIG}

_libc = ctypes.CDLL(None, use_errno=True)

LINKS = "uprobe_multi link"
PERF = "perf event"


def _link_create(prog_fd: int, path: bytes, offset: int, ret: bool) -> int:
    """bpf(BPF_LINK_CREATE) for one offset of one file; the link's fd."""
    c_path = ctypes.create_string_buffer(path)
    offsets = (ctypes.c_uint64 * 1)(offset)
    attr = ctypes.create_string_buffer(128)  # union bpf_attr, zeroed
    struct.pack_into("IIII", attr, 0, prog_fd, 0, BPF_TRACE_UPROBE_MULTI, 0)
    # link_create.uprobe_multi: path, offsets, ref_ctr_offsets, cookies, cnt, flags, pid
    flags = BPF_F_UPROBE_MULTI_RETURN if ret else 0
    struct.pack_into(
        "QQQQIII", attr, 16, ctypes.addressof(c_path), ctypes.addressof(offsets), 0, 0, 1, flags, 0
    )
    fd = _libc.syscall(NR_BPF, BPF_LINK_CREATE, attr, ctypes.sizeof(attr))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


class UprobeLinks:
    """The recording's uprobe links; falls back to BCC's perf events once the kernel
    refuses the first one."""

    def __init__(self, links: bool = True) -> None:
        """links False: perf events only (record --no-uprobe-links)."""
        self.fds: list[int] = []
        self.links = links
        self.mechanism: str | None = None  # LINKS or PERF, once a uprobe attached
        self.why_perf: str | None = None

    def attach(self, b, lib: str, sym: str, fn: str, ret: bool) -> None:
        if self.links and self.mechanism != PERF:
            # a symbol that is not there fails here, the same on either path
            path, offset = b._check_path_symbol(lib.encode(), sym.encode(), 0, -1)
            try:
                prog = b.load_func(fn.encode(), b.KPROBE, attach_type=BPF_TRACE_UPROBE_MULTI)
                self.fds.append(_link_create(prog.fd, path, offset, ret))
                self.mechanism = LINKS
                return
            except Exception as e:  # BCC's load_func raises a bare Exception
                if self.mechanism == LINKS or (
                    isinstance(e, OSError) and e.errno not in _UNSUPPORTED
                ):
                    raise  # links work here: this uprobe's own failure
                why = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
                self.mechanism, self.why_perf = PERF, f"uprobe_multi links refused: {why}"
                # BCC reloads the program for a perf event without the link's attach type
                loaded = b.funcs.pop(fn.encode(), None)
                if loaded is not None:
                    os.close(loaded.fd)
        self.mechanism = PERF
        attach = b.attach_uretprobe if ret else b.attach_uprobe
        attach(name=lib.encode(), sym=sym.encode(), fn_name=fn.encode())


def close_all(fds: Iterable[int]) -> None:
    """Close fds from one thread each: uprobe_multi links then wait out their grace
    periods together."""
    threads = [threading.Thread(target=os.close, args=(fd,)) for fd in fds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
