"""`iommu-trace record`: compile the catalog's probes, run the command, stream events to a trace."""

from __future__ import annotations

import ctypes as ct
import json
import os
import platform
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from .. import __version__
from ..probes import btf as btf_mod
from ..probes import catalog as catalog_mod
from ..probes import discover
from ..render.progress import Steps
from ..tracefile import journal
from ..tracefile.meta import STACK_ERRORS, missed_lines, stack_loss_lines, stacks_lost_total
from ..tracefile.writer import TraceWriter
from . import codegen, cost, counters, detach, headers, launch, tallies, uprobe_links
from . import ringbuf as rings
from .addresses import TextRedactor
from .decode import DECODE_ROWS, EVENT_DTYPE, EventBatcher
from .symbols import Symbolizer

# A killed recorder loses at most this much: events are journaled this often.
FLUSH_S = 0.5
FLUSH_EVENTS = 16384

# What `record` says when per-copy probes are on, from docs/recorder-cost.md.
PER_COPY_COST = (
    "a uprobe pair costs ~11 us a call, as much as a 4 KiB copy; the 4 KiB copy loop "
    "ran 1.7x slower under them on an H200 machine (docs/recorder-cost.md)"
)


class RecordError(RuntimeError):
    """Recording could not start; the message is one line for the user."""


@dataclass
class Options:
    output: str
    command: list[str] = field(default_factory=list)
    pid: int | None = None
    follow_all: bool = False
    as_root: bool = False
    enable: set[str] = field(default_factory=set)
    disable: set[str] = field(default_factory=set)
    uprobes: list[str] = field(default_factory=list)
    user_stacks: set[str] = field(default_factory=set)  # probes/groups given a user stack
    keep_addresses: bool = False
    duration: float | None = None
    catalog: str | None = None
    buffer_pages: int | None = None  # None: RING_PAGES for the ring buffer, PERF_PAGES per CPU
    stack_entries: int = 16384
    perf_buffer: bool = False
    raw_tracepoints: bool = True  # False: tracepoints take the tracefs record path
    uprobe_links: bool = True  # False: uprobes as perf events even where links exist
    workload_meta: dict = field(default_factory=dict)
    workload_result: str | None = None  # JSON the workload writes about itself
    pmu: bool = True  # count the IOMMU PMU's events where the machine has one
    count_software: tuple[str, ...] = ()  # software perf events to count too (cpu-clock)
    count: bool = False  # count events in the kernel (probe x dev x size x second), emit none
    count_entries: int = tallies.COUNT_ENTRIES  # keys the count map holds


def _kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(m[1]), int(m[2])) if m else (0, 0)


def _import_bcc():
    try:
        import bcc  # noqa: PLC0415 - only the recorder needs it

        return bcc
    except ImportError:
        raise RecordError(
            "BCC's Python module is not importable: apt-get install python3-bpfcc and use "
            "/usr/bin/python3 or a venv made with --system-site-packages"
        ) from None


def _compile_error(text: str) -> str:
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()
    return text.strip().splitlines()[-1] if text.strip() else "unknown error"


def _compile(bcc, text: str):
    """BPF(text=...) with the compiler's first error turned into one line."""
    # clang writes diagnostics to fd 2: a file (not a pipe, which a long
    # warning log could fill and block) keeps them for the message.
    with tempfile.TemporaryFile() as diag:
        saved = os.dup(2)
        os.dup2(diag.fileno(), 2)
        try:
            return bcc.BPF(text=text)
        except Exception as e:
            os.dup2(saved, 2)
            diag.seek(0)
            log = diag.read(1 << 20).decode(errors="replace")
            raise RecordError(
                f"BPF program failed to compile: {_compile_error(log or str(e))}"
            ) from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _attach(b, att: codegen.Attachment, links: uprobe_links.UprobeLinks) -> None:
    fn = att.fn.encode()
    if att.kind == "raw_tracepoint":
        b.attach_raw_tracepoint(tp=att.target.encode(), fn_name=fn)
    elif att.kind == "tracepoint":
        b.attach_tracepoint(tp=att.target.encode(), fn_name=fn)
    elif att.kind == "kprobe":
        b.attach_kprobe(event=att.target.encode(), fn_name=fn)
    elif att.kind == "kretprobe":
        b.attach_kretprobe(event=att.target.encode(), fn_name=fn, maxactive=64)
    elif att.kind in ("uprobe", "uretprobe"):
        assert att.path, "a uprobe attachment names its library"
        links.attach(b, att.path, att.target, att.fn, ret=att.kind == "uretprobe")
    else:
        raise ValueError(att.kind)


def _boot_wall_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, to turn event times into wall time."""
    return time.time_ns() - time.monotonic_ns()


def machine_meta() -> dict:
    try:
        cmdline = open("/proc/cmdline").read().strip()
    except OSError:
        cmdline = ""
    try:
        from ..system import iommu  # noqa: PLC0415

        state = iommu.snapshot()
    except Exception as e:  # the state is context; never lose a recording over it
        state = {"mode": "unknown", "notes": [f"IOMMU state unreadable: {e}"]}
    return {
        "hostname": socket.gethostname(),
        "kernel": {
            "release": platform.release(),
            "version": platform.version(),
            "cmdline": cmdline,
        },
        "iommu": state,
    }


# The default buffer sizes. The ring buffer (all CPUs share it) holds 16 MiB:
# 95,000 events of 176 bytes, 40 ms at the 2.4 M events/s one CPU can make on
# the 2-vCPU CI VM, against pauses of the consumer that a 4 MiB ring (10 ms)
# did not cover there (docs/recorder-cost.md). The perf buffer is per CPU.
RING_PAGES = 4096
PERF_PAGES = 1024

# BPF ring buffers: max_entries is a u32 power of two bytes, so 2 GiB at most.
RINGBUF_MAX_BYTES = 1 << 31


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def buffer_pages_problem(pages: int, ringbuf: bool) -> str | None:
    """Why the kernel would refuse this buffer size (or it would exhaust memory), or None."""
    if pages < 1 or pages & (pages - 1):
        return "must be a power of two (1, 2, 4, ... 4096)"
    page = os.sysconf("SC_PAGE_SIZE")
    total = pages * page * (1 if ringbuf else (os.cpu_count() or 1))
    if ringbuf and pages * page > RINGBUF_MAX_BYTES:
        return f"a BPF ring buffer holds at most {RINGBUF_MAX_BYTES // page} pages (2 GiB)"
    avail = _mem_available()
    if avail is not None and total > avail // 2:
        per = "" if ringbuf else f" on each of {os.cpu_count()} CPUs"
        return (
            f"{pages} pages of {page // 1024} KiB{per} is {total / 2**30:.1f} GiB, more than half "
            f"of this machine's available memory ({avail / 2**30:.1f} GiB)"
        )
    return None


# A stack map entry: the kernel's bucket header and PERF_MAX_STACK_DEPTH (127) u64s.
STACK_ENTRY_BYTES = 1040


def count_entries_problem(entries: int) -> str | None:
    """Why the count map would be refused or exhaust memory, or None."""
    if entries < 1:
        return "must be 1 or more"
    if entries >= 1 << 31:
        return "a BPF map holds fewer than 2**31 keys"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    cpus = max(cpus, os.cpu_count() or 1)
    need, avail = tallies.map_bytes(entries, cpus), _mem_available()
    if avail is not None and need > avail // 2:
        return (
            f"{entries} keys on {cpus} CPUs is {need / 2**30:.1f} GiB, more than half of this "
            f"machine's available memory ({avail / 2**30:.1f} GiB)"
        )
    return None


def stack_entries_problem(entries: int) -> str | None:
    """Why the stack map would be refused or exhaust memory, or None."""
    if entries < 1:
        return "must be 1 or more"
    avail = _mem_available()
    if avail is not None and entries * STACK_ENTRY_BYTES > avail // 2:
        return (
            f"{entries} stacks of ~1 KiB is {entries * STACK_ENTRY_BYTES / 2**30:.1f} GiB, more "
            f"than half of this machine's available memory ({avail / 2**30:.1f} GiB)"
        )
    return None


class Recorder:
    def __init__(
        self, opts: Options, log: Callable[[str], None], steps: Steps | None = None
    ) -> None:
        self.o = opts
        self.log = log
        self._steps = steps or Steps()  # the slow start-up steps, on a terminal
        self._stop_signal: int | None = None
        self._setup_s: dict[str, float] = {}
        self._released_at: float | None = None
        self._child_cpu: dict | None = None
        self._cpu_at_release: dict[str, float] | None = None
        self._followed_cpu_at: dict[str, float] | None = None  # record -p: the process's CPU
        self._sym: Symbolizer | None = None
        self._callback_s = 0.0  # time reading events from the buffer and resolving their stacks
        self._flush_s = 0.0  # time decoding and journaling them
        self._wakeups: int | None = None
        self._text_redactor = TextRedactor()
        self._owner = launch.invoking_user()  # under sudo, the files are the user's
        self._loss_counted: set[str] = set()  # record-path probes with a raw-tp counter
        # uprobes as BPF links where the kernel can
        self._links = uprobe_links.UprobeLinks(opts.uprobe_links)
        self._attachments: list[int] = []  # their fds, lifted (detach.lift_attachments)
        self._pages = RING_PAGES  # the buffer's size, --buffer-pages or the default
        self._lost = 0  # the perf buffer's lost count; set here so a loop that fails early
        # still finalizes the trace (run's finally reads it)
        self._origin_ns: int | None = None  # --count: second 0 of the count rows

    # ------------------------------------------------------------ setup
    def _check_numbers(self) -> None:
        """-d and --buffer-pages, before anything is compiled: one line naming what is wrong."""
        d = self.o.duration
        if d is not None and not (0 < d < float("inf")):
            raise RecordError(f"-d/--duration must be a number of seconds > 0, not {d:g}")
        pages = self.o.buffer_pages
        self._pages = pages if pages is not None else RING_PAGES if self._ringbuf() else PERF_PAGES
        why = buffer_pages_problem(self._pages, ringbuf=self._ringbuf())
        if why:
            raise RecordError(f"--buffer-pages {self._pages}: {why}")
        why = stack_entries_problem(self.o.stack_entries)
        if why:
            raise RecordError(f"--stack-entries {self.o.stack_entries}: {why}")
        if self.o.count:
            why = count_entries_problem(self.o.count_entries)
            if why:
                raise RecordError(f"--count-entries {self.o.count_entries}: {why}")

    def _ringbuf(self) -> bool:
        return not self.o.perf_buffer and _kernel_version() >= (5, 8)

    def _buffer(self) -> str:
        """How events reach the recorder (the trace's `buffer`): the ring buffer read through
        mmap in batches; BCC's callback per event where mmap reads are not safe; the perf
        buffer; none when they are counted in the kernel (--count)."""
        if self.o.count:
            return "none"
        if not self._ringbuf():
            return "perf"
        return "ringbuf" if rings.supported() else "ringbuf-callback"

    def _preflight(self):
        self._check_numbers()
        if os.geteuid() != 0:
            raise RecordError("recording needs root (BPF): run it with sudo")
        out_dir = os.path.dirname(os.path.abspath(self.o.output))
        if not os.path.isdir(out_dir):
            raise RecordError(f"cannot write {self.o.output}: no directory {out_dir}")
        if not os.access(out_dir, os.W_OK):
            raise RecordError(f"cannot write {self.o.output}: {out_dir} is not writable")
        if self.o.command:
            try:
                launch.resolve_command(self.o.command)
            except launch.LaunchError as e:
                raise RecordError(str(e)) from None
        if self.o.pid is not None and not os.path.exists(f"/proc/{self.o.pid}"):
            raise RecordError(f"no process with pid {self.o.pid}")
        bcc = _import_bcc()
        try:
            hdr = headers.resolve()
        except headers.HeadersMissing as e:
            raise RecordError(str(e)) from None
        if discover.tracefs() is None:
            raise RecordError(
                "tracefs is not available (mount -t tracefs nodev /sys/kernel/tracing)"
            )
        return bcc, hdr

    def _resolve(self) -> list[discover.Resolution]:
        try:
            cat = catalog_mod.load(self.o.catalog)
            extra = [catalog_mod.user_probe(s) for s in self.o.uprobes]
        except (catalog_mod.CatalogError, OSError) as e:
            raise RecordError(f"probe catalog: {e}") from None
        names = {p.name for p in cat.probes} | {p.group for p in cat.probes}
        names |= {p.name for p in extra}
        unknown = (self.o.enable | self.o.disable | self.o.user_stacks) - names
        if unknown:
            raise RecordError(
                f"unknown probe or group: {', '.join(sorted(unknown))} (see iommu-trace probes)"
            )
        if self.o.user_stacks:
            cat, extra = (
                catalog_mod.with_user_stacks(cat, self.o.user_stacks),
                [catalog_mod.with_user_stack(p, self.o.user_stacks) for p in extra],
            )
        return discover.resolve(
            cat,
            enable=self.o.enable,
            disable=self.o.disable,
            extra=extra,
            command=self.o.command or self._followed_exe(),
            raw=self.o.raw_tracepoints,
        )

    def _followed_exe(self) -> list[str] | None:
        """record -p: the process's executable, whose Python packages may hold CUDA libraries."""
        if self.o.pid is None:
            return None
        try:  # argv[0] first: a venv's bin/python, where exe is the interpreter it links to
            with open(f"/proc/{self.o.pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode()
            if os.path.isabs(argv0) and os.path.exists(argv0):
                return [argv0]
            return [os.readlink(f"/proc/{self.o.pid}/exe")]
        except (OSError, UnicodeDecodeError):
            return None

    # ------------------------------------------------------------ run
    def run(self) -> int:
        self._steps.step("loading BCC, finding kernel headers")
        bcc, hdr = self._preflight()
        self._steps.step("finding the probes this kernel offers")
        resolved = self._resolve()
        machine = machine_meta()  # before attaching: slow reads must not let the buffer fill
        root = discover.tracefs()
        fork = discover.tracepoint_fields("sched:sched_process_fork", root) or {}
        if "child_pid" not in fork:
            raise RecordError("sched:sched_process_fork is missing: cannot follow children")
        follow_all = self.o.follow_all or (not self.o.command and self.o.pid is None)
        buffer = self._buffer()
        try:
            text, atts = codegen.generate(
                resolved,
                fork_child_offset=fork["child_pid"].offset,
                follow_all=follow_all,
                ringbuf=buffer != "perf",
                ringbuf_pages=self._pages,
                stack_entries=self.o.stack_entries,
                btf=btf_mod.running(),
                count_entries=self.o.count_entries if self.o.count else None,
            )
        except codegen.CodegenError as e:
            raise RecordError(f"probe catalog: {e}") from None
        n = sum(r.status == "attach" for r in resolved)
        self._steps.step(f"compiling the BPF program for {n} probes")
        t_compile = time.monotonic()
        b = _compile(bcc, text)
        t_attach = time.monotonic()
        if self.o.count:  # second 0 of the count rows: before any probe can fire
            self._origin_ns = time.monotonic_ns()
            b["control"][ct.c_int(0)] = ct.c_uint64(self._origin_ns)
        self._steps.step(f"attaching {n} probes")
        self._attach_all(b, resolved, atts)
        if not follow_all:  # the followed processes' children are followed too
            b.attach_tracepoint(tp=b"sched:sched_process_fork", fn_name=b"on_fork")
        # out of libbcc's stray close()'s reach; checked again at the end
        self._attachments = detach.lift_attachments(b, self._links)
        self._setup_s = {
            "compile_s": t_attach - t_compile,
            "attach_s": time.monotonic() - t_attach,
        }
        self._steps.done()  # before the lines below, and the command's own output
        attached = [r for r in resolved if r.status == "attach"]
        self.log(f"kernel headers: {hdr.note}")  # said once the program compiled against them
        self._report_missing(resolved)
        if self._links.why_perf:
            self.log(f"note: uprobes attached as perf events ({self._links.why_perf})")
        if not attached:
            raise RecordError("no probe could be attached on this kernel (see iommu-trace probes)")
        raw = sum(r.target is not None and r.target.kind == "raw_tracepoint" for r in attached)
        via = {
            "ringbuf": "ring buffer (mmap)",
            "ringbuf-callback": "ring buffer (callback)",
            "none": f"counting in the kernel ({self.o.count_entries} keys; no events, no stacks)",
        }
        self.log(
            f"attached {len(attached)} of {len(resolved)} probes ({raw} raw tracepoints, "
            f"{len([a for a in atts if a.kind in ('uprobe', 'uretprobe')])} uprobes"
            + (" as BPF links" if self._links.mechanism == uprobe_links.LINKS else "")
            + ") via "
            + via.get(buffer, "perf buffer")
        )
        self._warn_per_copy(attached)

        meta = {
            "tool": f"iommu-trace {__version__}",
            "command": self.o.command,
            "follow": "all" if follow_all else ("pid" if self.o.pid else "command"),
            "pid": self.o.pid,
            "start_wall": datetime.now(UTC).isoformat(),
            # a counting trace starts where its seconds do, just before attaching
            "start_mono_ns": self._origin_ns if self.o.count else time.monotonic_ns(),
            "mode": "count" if self.o.count else "events",
            "wall_minus_mono_ns": _boot_wall_offset_ns(),
            "headers": {"source": hdr.source, "path": hdr.path, "note": hdr.note},
            "buffer": buffer,
            "addresses": "raw" if self.o.keep_addresses else "pseudonymized-2MiB-regions",
            "probes": [r.as_meta() for r in resolved],
            # how the uprobes attached: "uprobe_multi link" or "perf event" (None: none)
            "uprobes_via": self._links.mechanism,
            "workload": self.o.workload_meta,
            **machine,
        }
        self._sampler: counters.pmu.Sampler | None
        try:
            self._sampler, meta["pmu"] = counters.start(self.o.count_software, self.o.pmu)
        except OSError as e:  # perf_event_open refused outright: the trace goes on without
            self._sampler, meta["pmu"] = None, {"counters": [], "notes": [f"PMU counting: {e}"]}
        for note in meta["pmu"]["notes"]:
            if note != counters.pmu.NO_PMU_HINT:  # doctor says that one
                self.log(f"note: {note}")
        if not self.o.keep_addresses:  # dmesg lines, kernel command lines
            meta = self._redact(meta)
        writer = TraceWriter(self.o.output, meta, owner=self._owner)
        self.log(f"writing {self.o.output}")
        status = None
        try:
            status = self._loop(b, resolved, writer, buffer)
        finally:
            if self.o.count:  # at rest, so the counters and the map agree (tracer/tallies.py)
                _stop_counting(b)
                meta["count"] = self._write_counts(b, resolved, writer)
            counts = self._sum_table(b, "counts", resolved)
            drops = self._sum_table(b, "drops", resolved)
            fired = self._sum_table(b, "fired", resolved)
            fired = {k: v for k, v in fired.items() if k in self._loss_counted}
            withheld = {k: v - counts.get(k, 0) for k, v in fired.items() if v > counts.get(k, 0)}
            stacks_lost = self._stack_losses(b, resolved)
            missed = self._missed(b, resolved, atts)
            closed = detach.lost(self._attachments)
            meta.update(
                end_mono_ns=time.monotonic_ns(),
                end_wall=datetime.now(UTC).isoformat(),
                exit_status=status,
                stop_signal=self._stop_signal,
                counts=counts,
                drops=drops,
                lost=self._lost,
                fired=fired,
                withheld=withheld,
                missed=missed,
                stacks_lost=stacks_lost,
                attachments_closed=closed,
            )
            if self._sampler is not None:
                writer.write(counters.batch(self._sampler.tick(time.monotonic_ns(), force=True)))
                self._sampler.close()
            meta["events_written"] = writer.rows
            holder = detach.hand_off(b, self._links)
            meta["detach"] = "background" if holder is not None else "in place"
            meta["cost"] = self._cost(b)
            meta["workload"] = self._workload_result(meta["workload"])
            writer.finalize(meta if self.o.keep_addresses else self._redact(meta))
            detach.detach(b, self._links, holder, self.log)
        for name, n in withheld.items():
            self.log(
                f"{name}: the kernel withheld {n} of {fired[name]} events from the tracefs "
                "record path (a record too large for the perf trace buffer); raw tracepoints "
                "count them all"
            )
        for line in missed_lines(missed):
            self.log(line)
        if closed:
            self.log(
                f"WARNING: {closed} of {len(self._attachments)} probe attachments were closed "
                "while recording (by libbcc? system/fds.py): their probes stopped early and "
                "their counts are short"
            )
        for line in stack_loss_lines(stacks_lost):
            self.log(line)
        if self.o.count:
            self._say_counts(meta["count"], counts, writer)
            return status if status is not None else 0
        total_drops = sum(drops.values()) + self._lost
        lost = stacks_lost_total(stacks_lost)
        self.log(
            f"{writer.rows} events written to {self.o.output}"
            + (
                f"; {total_drops} DROPPED (counts stay exact; raise --buffer-pages)"
                if total_drops
                else ""
            )
            + (f"; {lost} stacks lost (null stack ids; raise --stack-entries)" if lost else "")
        )
        return status if status is not None else 0

    def _write_counts(self, b, resolved, writer: TraceWriter) -> dict:
        """The count map as count rows into the trace; the trace's `count` metadata."""
        keys, summed = tallies.read_map(b["tallies"])
        if len(keys):
            writer.write(None, counts=tallies.rows(keys, summed, resolved))
        full, other = tallies.errors(b["tally_errors"], resolved)
        return {
            "origin_mono_ns": self._origin_ns,
            "map_entries": self.o.count_entries,
            "map_keys": len(keys),
            "map_full": full,
            "map_errors": other,
        }

    def _say_counts(self, c: dict, counts: dict[str, int], writer: TraceWriter) -> None:
        for name, n in c["map_full"].items():
            self.log(
                f"{name}: {n} of {counts.get(name, 0)} events NOT in the count rows: the count "
                f"map ({c['map_entries']} keys) was full (raise --count-entries); the probe's "
                "count stays exact"
            )
        for name, n in c["map_errors"].items():
            self.log(f"{name}: {n} events NOT in the count rows: the count map refused them")
        self.log(
            f"{sum(counts.values())} events counted in the kernel into {writer.count_rows} "
            f"count rows (probe x device x size x second) in {self.o.output}"
        )

    def _warn_per_copy(self, attached) -> None:
        per_copy = [r.probe.name for r in attached if not r.probe.default and r.probe.op == "call"]
        if per_copy:
            self.log(f"warning: per-copy probes on ({', '.join(per_copy)}): {PER_COPY_COST}")

    def _cost(self, b) -> dict:
        """What this recording cost (tracer/cost.py); null where not measured."""
        started, released = cost.process_start_s(), self._released_at
        return {
            # `record` started -> the command exec'd: what a user waits before the workload runs
            "startup_s": released - started if released and started else None,
            **self._setup_s,
            "recorder_cpu": (now := cost.self_cpu()),
            # what competed with the command: the recorder's CPU after it started it
            "recorder_cpu_running": cost.since(now, self._cpu_at_release),
            "callback_s": self._callback_s,
            "flush_s": self._flush_s,
            "wakeups": self._wakeups,
            "symbol_refreshes": self._sym.refreshes if self._sym else None,
            "workload_cpu": self._child_cpu,
            "bpf": cost.bpf_run_time([f.fd for f in b.funcs.values()]),
        }

    def _redact(self, meta: dict) -> dict:
        """Address-like hex in every metadata string, pseudonymized (stable within the trace)."""
        return self._text_redactor.tree(meta)

    def _workload_result(self, initial: dict) -> dict:
        """Merge what the workload wrote about itself (bytes, seconds per run) into the trace."""
        path = self.o.workload_result
        if not path:
            return initial
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            self.log(f"note: the workload wrote no result file ({path})")
            return initial
        except (OSError, ValueError) as e:
            self.log(f"note: workload result {path} unreadable ({e}); not stored")
            return initial
        return {**initial, **data} if isinstance(data, dict) else {**initial, "result": data}

    def _report_missing(self, resolved) -> None:
        """One line per cause, naming the probes it keeps out."""
        by_cause: dict[str, list[str]] = {}
        for r in resolved:
            if r.status in ("absent", "failed"):
                cause = r.reason.split("; ")[0].split(": ", 1)[-1]
                by_cause.setdefault(cause, []).append(r.probe.name)
        for cause, names in by_cause.items():
            self.log(f"not attached ({cause}): {', '.join(names)}")

    def _attach_all(self, b, resolved, atts) -> None:
        for att in atts:
            r = resolved[att.index]
            if r.status != "attach":
                continue  # a sibling attachment already failed
            try:
                _attach(b, att, self._links)
                if att.optional:
                    self._loss_counted.add(r.probe.name)
            except Exception as e:
                if att.optional:
                    continue
                r.status = "failed"
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                r.reason = f"{att.kind} {att.target}: {first}"

    @staticmethod
    def _sum_table(b, name: str, resolved) -> dict[str, int]:
        table = b[name]
        out = {}
        for i, r in enumerate(resolved):
            if r.status == "attach":
                out[r.probe.name] = int(sum(table[ct.c_int(i)]))
        return out

    @staticmethod
    def _missed(b, resolved, atts) -> dict[str, int]:
        """Per probe, the runs the kernel skipped of its programs (cost.recursion_misses);
        zeros left out."""
        out: dict[str, int] = {}
        for att in atts:
            r = resolved[att.index]
            func = b.funcs.get(att.fn.encode())
            if r.status != "attach" or func is None:
                continue
            n = cost.recursion_misses(func.fd)
            if n:
                out[r.probe.name] = out.get(r.probe.name, 0) + n
        return out

    @staticmethod
    def _stack_losses(b, resolved) -> dict[str, dict[str, dict[str, int]]]:
        """get_stackid failures per probe, kernel and user, by kind (program.c's
        stack_errors: [probe * 8 + (user ? 4 : 0) + kind]); zeros left out."""
        table = b["stack_errors"]
        out: dict[str, dict[str, dict[str, int]]] = {}
        for i, r in enumerate(resolved):
            if r.status != "attach":
                continue
            for side, base in (("kernel", 0), ("user", 4)):
                for j, kind in enumerate(STACK_ERRORS):
                    n = int(sum(table[ct.c_int(i * 8 + base + j)]))
                    if n:
                        out.setdefault(r.probe.name, {}).setdefault(side, {})[kind] = n
        return out

    def _loop(self, b, resolved, writer: TraceWriter, buffer: str) -> int | None:
        self._writer = writer
        self._flushed_at = time.monotonic()
        batcher: EventBatcher | None = None
        if self.o.count:  # nothing to consume: the kernel counts
            poll: Callable[[float], None] = time.sleep
        else:
            self._sym = Symbolizer(b, b["stacks"])
            batcher = EventBatcher(resolved, self._sym, self.o.keep_addresses)
            poll = self._consumer(b, buffer, batcher)
            _warm_up(resolved)
        self._batcher = batcher

        old = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        child = None
        try:
            if self.o.command:
                child = launch.spawn(
                    self.o.command, None if self.o.as_root else launch.invoking_user()
                )
                b["followed"][ct.c_uint32(child.pid)] = ct.c_uint8(1)
                child.release()
                self._released_at = cost.boottime_s()
                self._cpu_at_release = cost.self_cpu()
                err = launch.exec_error(child)
                if err:
                    os.waitpid(child.pid, 0)
                    self.log(f"could not start {self.o.command[0]}: {err}")
                    return 127
            elif self.o.pid is not None:
                kids = launch.descendants(self.o.pid)
                for pid in [self.o.pid, *kids]:
                    b["followed"][ct.c_uint32(pid)] = ct.c_uint8(1)
                self._released_at = cost.boottime_s()
                self._cpu_at_release = cost.self_cpu()
                self._followed_cpu_at = cost.process_cpu(self.o.pid)
                self.log(
                    f"following pid {self.o.pid}"
                    + (f" and its {len(kids)} running descendants" if kids else "")
                    + " and the children it forks"
                )
            return self._wait(poll, writer, child)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if batcher is not None:
                _drain(poll, batcher)
            self._flush(force=True)

    def _consumer(self, b, buffer: str, batcher: EventBatcher) -> Callable[[float], None]:
        """poll(timeout_s): hand the events buffered now to the batcher, waiting up to
        timeout_s for some if there are none."""
        clock = time.perf_counter
        if buffer == "ringbuf":
            ring = rings.RingReader(b["events"].map_fd, rings.ring_bytes(self._pages), EVENT_DTYPE)
            self._wakeups = 0

            def read() -> int:
                t = clock()
                try:
                    got = ring.read()
                except rings.RingError as e:
                    raise RecordError(str(e)) from None
                if got is not None:
                    batcher.add_records(got)
                self._callback_s += clock() - t
                return 0 if got is None else len(got)

            def poll_ring(timeout_s: float) -> None:
                n = read()
                if not n:  # idle: the kernel wakes us at the next event
                    ring.wait(timeout_s)
                    self._wakeups = ring.wakeups
                    n = read()
                if 0 < n < ring.capacity // 4:  # a trickle: let the ring gather a batch
                    time.sleep(rings.READ_GAP_S)

            return poll_ring

        def on_event(_ctx, data, size):
            t = clock()
            batcher.add(data, size)
            self._callback_s += clock() - t

        def on_lost(n):
            self._lost += n

        if buffer == "ringbuf-callback":
            b["events"].open_ring_buffer(on_event)
            bcc_poll = b.ring_buffer_poll
        else:
            b["events"].open_perf_buffer(on_event, page_cnt=self._pages, lost_cb=on_lost)
            bcc_poll = b.perf_buffer_poll

        def poll_bcc(timeout_s: float) -> None:
            bcc_poll(int(timeout_s * 1000))
            t = clock()
            batcher.commit()
            self._callback_s += clock() - t

        return poll_bcc

    def _flush(self, force: bool = False) -> None:
        """Journal the batch: at FLUSH_EVENTS events or FLUSH_S seconds, whichever first."""
        now = time.monotonic()
        if self._batcher is None:
            pass  # --count: no events; the count rows are written at the end
        elif force or len(self._batcher) >= FLUSH_EVENTS or now - self._flushed_at >= FLUSH_S:
            t = time.perf_counter()
            events = self._batcher.take()
            self._writer.write(events, stacks=self._batcher.take_stacks())
            self._flush_s += time.perf_counter() - t
            self._flushed_at = now
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            self._writer.write(counters.batch(sampler.tick(time.monotonic_ns())))

    def _on_signal(self, signum, _frame) -> None:
        self._stop_signal = signum

    def _wait(self, poll, writer: TraceWriter, child) -> int | None:
        deadline = time.monotonic() + self.o.duration if self.o.duration else None
        forwarded_at = None
        while True:
            poll(0.1)
            self._flush()
            if child is not None:
                pid, status, ru = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    self._child_cpu = cost.child_cpu(ru)
                    return os.waitstatus_to_exitcode(status)
            elif self.o.pid is not None and not os.path.exists(f"/proc/{self.o.pid}"):
                return None
            if self.o.pid is not None:  # its CPU while followed; gone with the process
                self._child_cpu = (
                    cost.since(cost.process_cpu(self.o.pid) or {}, self._followed_cpu_at)
                    or self._child_cpu
                )
            if deadline and time.monotonic() >= deadline and self._stop_signal is None:
                self._stop_signal = signal.SIGINT if child else 0
                if not child:
                    return None
            if self._stop_signal is not None:
                if child is None:
                    return None
                if forwarded_at is None:
                    forwarded_at = time.monotonic()
                    sig = self._stop_signal or signal.SIGINT
                    try:
                        os.kill(child.pid, sig)
                    except ProcessLookupError:
                        pass
                elif time.monotonic() - forwarded_at > 5:
                    os.kill(child.pid, signal.SIGKILL)
                    forwarded_at = time.monotonic() + 1e9  # kill once


def _stop_counting(b) -> None:
    """--count: the programs count nothing from now on (program.c's control[1]); a program
    that passed that test before may still be finishing: they take microseconds."""
    b["control"][ct.c_int(1)] = ct.c_uint64(1)
    time.sleep(0.05)


def _drain(poll: Callable[[float], None], batcher: EventBatcher) -> None:
    """Read what is still buffered: the command's last events matter most."""
    for _ in range(50):
        before = len(batcher)
        poll(0.05)
        if len(batcher) == before:
            break


def _warm_up(resolved: list[discover.Resolution]) -> None:
    """Put a batch of empty events through decoding and journal encoding, unwritten.

    The first batch costs several times a later one (numpy's and Arrow's lazy
    set-up, fresh memory); paid while the command runs, it is a pause in which
    a fast probe fills the ring.
    """
    plain = [i for i, r in enumerate(resolved) if r.probe.op != "exec"]
    ev = np.zeros(DECODE_ROWS, rings.record_dtype(EVENT_DTYPE))
    ev["probe"], ev["kstack"], ev["ustack"] = plain[0] if plain else 0, -1, -1
    batcher = EventBatcher(resolved, sym=None, keep_addresses=False)  # type: ignore[arg-type]
    batcher.add_records(ev)
    journal.stream(batcher.take())


def exit_code(status: int | None) -> int:
    """The shell convention: 128+N for a command killed by signal N."""
    if status is None:
        return 0
    return 128 - status if status < 0 else status


def main_record(opts: Options, log=lambda s: print(f"iommu-trace: {s}", file=sys.stderr)) -> int:
    steps = Steps()
    try:
        return exit_code(Recorder(opts, log, steps).run())
    finally:
        steps.done()  # a start-up that failed leaves no spinner behind its one line
