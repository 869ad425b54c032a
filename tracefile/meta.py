"""The trace's metadata as typed objects, built from its JSON in one place.

Readers ask `trace.metadata.iommu.mode` instead of `(meta.get("iommu") or {}).get("mode")`;
what a recorder left out, or wrote in another shape, is None (or empty), never a
KeyError or a TypeError. The raw dict stays on `Trace.meta` for what needs the JSON
itself: `upgrade` writing it back, `info` echoing each probe entry as recorded.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> int | float | None:
    """A number as written (an int stays an int, so JSON outputs echo it unchanged)."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _counts(v: Any) -> dict[str, int]:
    return {k: n for k, n in _dict(v).items() if isinstance(k, str) and _int(n) is not None}


@dataclass(frozen=True)
class Kernel:
    release: str | None = None
    version: str | None = None
    cmdline: str | None = None

    @classmethod
    def from_json(cls, k: Any) -> Kernel:
        if isinstance(k, str):  # a bare string is taken as the release
            return cls(release=k)
        k = _dict(k)
        return cls(k.get("release"), k.get("version"), k.get("cmdline"))


@dataclass(frozen=True)
class Iommu:
    """`system.iommu.snapshot()` at record time."""

    mode: str | None = None  # off, passthrough, lazy, strict, mixed
    vendor: str | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)  # [{group, type, devices}]
    params: dict[str, Any] = field(default_factory=dict)  # IOMMU kernel parameters

    @classmethod
    def from_json(cls, s: Any) -> Iommu:
        s = _dict(s)
        return cls(
            s.get("mode"), s.get("vendor"), s.get("groups") or [], s.get("iommu_params") or {}
        )

    @property
    def group_types(self) -> list[str]:
        """The default domain types of the groups, each once (DMA, DMA-FQ, identity...)."""
        return sorted({g["type"] for g in self.groups if g.get("type")})


@dataclass(frozen=True)
class Probe:
    """One entry of the probe list: a catalog probe and what became of it on this kernel."""

    name: str
    group: str = ""  # dma, iommu-map, iotlb-flush, iova, cuda-runtime, timing...
    op: str = ""  # map, unmap, flush, call...
    scope: str = ""  # device (system-wide) or process
    status: str = ""  # attach, or why not: absent, disabled...
    target: str = ""  # what it attached to (kprobe+ret:f, tracepoint:dma:x...); "": nothing
    reason: str = ""  # why it did not attach
    path: str | None = None  # how its events were read ("tracefs record"...); None: not said

    @property
    def attached(self) -> bool:
        return self.status == "attach"

    @classmethod
    def from_json(cls, p: Any) -> Probe | None:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            return None
        words = ("group", "op", "scope", "status", "target", "reason")
        return cls(p["name"], path=_str(p.get("path")), **{k: _str(p.get(k)) or "" for k in words})


@dataclass(frozen=True)
class Headers:
    """The kernel headers the BPF program compiled against."""

    source: str | None = None
    path: str | None = None
    note: str | None = None

    @classmethod
    def from_json(cls, h: Any) -> Headers:
        h = _dict(h)
        return cls(_str(h.get("source")), _str(h.get("path")), _str(h.get("note")))


@dataclass(frozen=True)
class Pmu:
    """What the recorder counted on the IOMMU PMU (or the software events it was asked for)."""

    recorded: bool = False  # False: a recorder from before PMU counting
    counters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be counted, and why

    @classmethod
    def from_json(cls, p: Any) -> Pmu:
        p = _dict(p)
        return cls(bool(p), _strs(p.get("counters")), _strs(p.get("notes")))


def _cpu_s(d: Any) -> int | float | None:
    """user_s + sys_s of one getrusage record."""
    d = _dict(d)
    user, sys = _num(d.get("user_s")), _num(d.get("sys_s"))
    return None if user is None or sys is None else user + sys


@dataclass(frozen=True)
class Cost:
    """What the recording cost (tracer/cost.py), in seconds; None where it was not measured."""

    startup_s: int | float | None = None  # `record` started -> the command exec'd
    compile_s: int | float | None = None
    attach_s: int | float | None = None
    recorder_cpu_s: int | float | None = None  # the recorder's CPU, all of the recording
    recorder_cpu_running_s: int | float | None = None  # ... while the command ran
    workload_cpu_s: int | float | None = None
    bpf_run_time_ns: int | None = None  # where kernel.bpf_stats_enabled was on

    @classmethod
    def from_json(cls, c: Any) -> Cost | None:
        """None for a trace from a recorder that did not measure its cost."""
        if not c or not isinstance(c, dict):
            return None
        return cls(
            startup_s=_num(c.get("startup_s")),
            compile_s=_num(c.get("compile_s")),
            attach_s=_num(c.get("attach_s")),
            recorder_cpu_s=_cpu_s(c.get("recorder_cpu")),
            recorder_cpu_running_s=_cpu_s(c.get("recorder_cpu_running")),
            workload_cpu_s=_cpu_s(c.get("workload_cpu")),
            bpf_run_time_ns=_int(_dict(c.get("bpf")).get("run_time_ns")),
        )


@dataclass(frozen=True)
class Counting:
    """A counting trace's (`record --count`) BPF map: where its seconds start, its size,
    and the events it could not take (the probe's counter has them, no count row does)."""

    origin_mono_ns: int | None = None  # second 0 of the count rows starts here
    map_entries: int | None = None  # the map's size: distinct (probe, dev, size, second) keys
    map_keys: int | None = None  # keys it held at the end
    map_full: dict[str, int] = field(default_factory=dict)  # per probe: refused, map full
    map_errors: dict[str, int] = field(default_factory=dict)  # per probe: refused otherwise

    @classmethod
    def from_json(cls, c: Any) -> Counting:
        c = _dict(c)

        def refused(v: Any) -> dict[str, int]:  # a negative count is no count
            return {k: n for k, n in _counts(v).items() if n >= 0}

        return cls(
            _int(c.get("origin_mono_ns")),
            _int(c.get("map_entries")),
            _int(c.get("map_keys")),
            refused(c.get("map_full")),
            refused(c.get("map_errors")),
        )

    @property
    def not_counted(self) -> dict[str, int]:
        """Per probe, events counted by its counter but in no count row (zeros left out)."""
        out: dict[str, int] = {}
        for d in (self.map_full, self.map_errors):
            for k, n in d.items():
                if n:
                    out[k] = out.get(k, 0) + n
        return out


@dataclass(frozen=True)
class TraceMeta:
    format: str | None = None
    version: int = 1
    tool: str | None = None  # "iommu-trace 0.1.0"
    command: list[str] | None = None
    follow: str | None = None  # what was traced when there is no command: "all" or a pid
    exit_status: int | None = None
    stop_signal: int | None = None  # the signal that stopped the recording (Ctrl-C...)
    start_wall: str | None = None  # ISO 8601, UTC
    hostname: str | None = None
    kernel: Kernel = field(default_factory=Kernel)
    iommu: Iommu = field(default_factory=Iommu)
    headers: Headers = field(default_factory=Headers)
    buffer: str | None = None  # ringbuf or perf
    uprobes_via: str | None = None  # "uprobe_multi link" or "perf event"; None: no uprobes
    addresses: str | None = None  # raw, or how they were pseudonymized
    probes: list[Probe] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # per probe, exact (kernel counters)
    drops: dict[str, int] = field(default_factory=dict)  # per probe, lost to a full buffer
    lost: int = 0  # lost by the perf buffer, not per probe
    fired: dict[str, int] = field(default_factory=dict)  # raw-tracepoint counts (record path)
    # per probe, runs of its BPF programs the kernel skipped (another one ran on that CPU):
    # events in neither the file nor `counts`
    missed: dict[str, int] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    pmu: Pmu = field(default_factory=Pmu)
    cost: Cost | None = None
    start_mono_ns: int | None = None
    end_mono_ns: int | None = None
    # probe -> "kernel"/"user" -> STACK_ERRORS kind -> events whose stack was lost
    stacks_lost: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    mode: str = "events"  # "count": a counting trace (record --count), count rows only
    counting: Counting = field(default_factory=Counting)

    @classmethod
    def from_json(cls, m: dict[str, Any]) -> TraceMeta:
        listed = m.get("probes")
        probes = [Probe.from_json(p) for p in listed] if isinstance(listed, list) else []
        return cls(
            format=_str(m.get("format")),
            version=_int(m.get("version")) or 1,
            tool=_str(m.get("tool")),
            command=m.get("command"),
            follow=None if m.get("follow") is None else str(m.get("follow")),
            exit_status=m.get("exit_status"),
            stop_signal=_int(m.get("stop_signal")),
            start_wall=_str(m.get("start_wall")),
            hostname=m.get("hostname"),
            kernel=Kernel.from_json(m.get("kernel")),
            iommu=Iommu.from_json(m.get("iommu")),
            headers=Headers.from_json(m.get("headers")),
            buffer=_str(m.get("buffer")),
            uprobes_via=_str(m.get("uprobes_via")),
            addresses=_str(m.get("addresses")),
            probes=[p for p in probes if p is not None],
            counts=dict(m.get("counts") or {}),
            drops=dict(m.get("drops") or {}),
            lost=max(0, _int(m.get("lost")) or 0),
            fired=_counts(m.get("fired")),
            missed=_counts(m.get("missed")),
            workload=_dict(m.get("workload")),
            pmu=Pmu.from_json(m.get("pmu")),
            cost=Cost.from_json(m.get("cost")),
            start_mono_ns=m.get("start_mono_ns"),
            end_mono_ns=m.get("end_mono_ns"),
            stacks_lost=stack_losses(m.get("stacks_lost")),
            mode=_str(m.get("mode")) or "events",
            counting=Counting.from_json(m.get("count")),
        )

    @property
    def what(self) -> str:
        """The traced command as a shell line, else what was followed."""
        return shlex.join(self.command) if self.command else f"({self.follow})"

    @property
    def attached(self) -> dict[str, Probe]:
        """The probes that attached, by name, in the recorder's order."""
        return {p.name: p for p in self.probes if p.attached}


# Why bpf_get_stackid gave no stack id (program.c's stack_errors), in the trace's words.
STACK_ERRORS = {
    "collision": "hash collision",  # -EEXIST: the bucket holds another stack
    "full": "stack map full",  # -ENOMEM
    "fault": "no stack to walk",  # -EFAULT
    "other": "other error",
}


def stack_losses(v: Any) -> dict[str, dict[str, dict[str, int]]]:
    """The `stacks_lost` metadata with malformed entries left out."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for probe, sides in (v if isinstance(v, dict) else {}).items():
        for side, kinds in (sides if isinstance(sides, dict) else {}).items():
            if side not in ("kernel", "user") or not isinstance(kinds, dict):
                continue
            for kind, n in kinds.items():
                if (
                    kind in STACK_ERRORS
                    and isinstance(n, int)
                    and not isinstance(n, bool)
                    and n > 0
                ):
                    out.setdefault(probe, {}).setdefault(side, {})[kind] = n
    return out


def missed_lines(missed: dict[str, int]) -> list[str]:
    """One line per probe whose BPF program the kernel skipped (TraceMeta.missed)."""
    return [
        f"missed: {name}'s BPF program was skipped {n:,} times (called while another kprobe "
        "or tracepoint program ran on that CPU); those events are in neither the trace nor "
        "its counts"
        for name, n in missed.items()
        if n
    ]


# What a bigger stack map helps (or an unknown error); "fault" is no stack to walk: a
# user stack asked in kernel context (an interrupt, a kernel thread), not a loss.
LOSSES = ("collision", "full", "other")


def _per_probe(lost: dict[str, dict[str, dict[str, int]]], kinds: tuple[str, ...]) -> dict:
    return {
        probe: [
            (side, kind, n) for side, ks in sides.items() for kind, n in ks.items() if kind in kinds
        ]  # fmt: skip
        for probe, sides in lost.items()
    }


def stack_loss_lines(lost: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """One line per probe that lost stacks: "stacks lost: N user stacks of PROBE (why)"."""
    return [
        "stacks lost: "
        + ", ".join(f"{n} {side} stacks of {probe} ({STACK_ERRORS[kind]})" for side, kind, n in x)
        for probe, x in _per_probe(lost, LOSSES).items()
        if x
    ]


def no_stack_line(lost: dict[str, dict[str, dict[str, int]]]) -> str | None:
    """The events that had no stack to take, in one line; None: none."""
    parts = [
        f"{n} {side} of {probe}"
        for probe, x in _per_probe(lost, ("fault",)).items()
        for side, _, n in x
    ]
    if not parts:
        return None
    return (
        "no stack to walk (-EFAULT: an interrupt or kernel thread has no user stack, "
        "or it was not readable; not a loss): " + ", ".join(parts)
    )


def stacks_lost_total(lost: dict[str, dict[str, dict[str, int]]], kinds=LOSSES) -> int:
    return sum(
        n for sides in lost.values() for ks in sides.values() for k, n in ks.items() if k in kinds
    )
