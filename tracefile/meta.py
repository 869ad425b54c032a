"""The trace's metadata as typed objects, built from its JSON in one place.

Readers ask `trace.metadata.iommu.mode` instead of `(meta.get("iommu") or {}).get("mode")`;
what a recorder left out is None (or empty), never a KeyError. The raw dict stays
on `Trace.meta` for the JSON outputs that echo it whole.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Kernel:
    release: str | None = None
    version: str | None = None
    cmdline: str | None = None

    @classmethod
    def from_json(cls, k: Any) -> Kernel:
        if isinstance(k, str):  # a bare string is taken as the release
            return cls(release=k)
        k = k if isinstance(k, dict) else {}
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
        s = s if isinstance(s, dict) else {}
        return cls(
            s.get("mode"), s.get("vendor"), s.get("groups") or [], s.get("iommu_params") or {}
        )

    @property
    def group_types(self) -> list[str]:
        """The default domain types of the groups, each once (DMA, DMA-FQ, identity...)."""
        return sorted({g["type"] for g in self.groups if g.get("type")})


@dataclass(frozen=True)
class TraceMeta:
    command: list[str] | None = None
    follow: str | None = None  # what was traced when there is no command: "all" or a pid
    exit_status: int | None = None
    hostname: str | None = None
    kernel: Kernel = field(default_factory=Kernel)
    iommu: Iommu = field(default_factory=Iommu)
    probes: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    start_mono_ns: int | None = None
    end_mono_ns: int | None = None
    # probe -> "kernel"/"user" -> STACK_ERRORS kind -> events whose stack was lost
    stacks_lost: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, m: dict[str, Any]) -> TraceMeta:
        wl = m.get("workload")
        return cls(
            command=m.get("command"),
            follow=None if m.get("follow") is None else str(m.get("follow")),
            exit_status=m.get("exit_status"),
            hostname=m.get("hostname"),
            kernel=Kernel.from_json(m.get("kernel")),
            iommu=Iommu.from_json(m.get("iommu")),
            probes=list(m.get("probes") or []),
            counts=dict(m.get("counts") or {}),
            drops=dict(m.get("drops") or {}),
            workload=wl if isinstance(wl, dict) else {},
            start_mono_ns=m.get("start_mono_ns"),
            end_mono_ns=m.get("end_mono_ns"),
            stacks_lost=stack_losses(m.get("stacks_lost")),
        )

    @property
    def what(self) -> str:
        """The traced command as a shell line, else what was followed."""
        return shlex.join(self.command) if self.command else f"({self.follow})"


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


def stack_loss_lines(lost: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """One line per probe: "stacks lost: N user stacks of PROBE (why), ..."."""
    return [
        "stacks lost: "
        + ", ".join(
            f"{n} {side} stacks of {probe} ({STACK_ERRORS[kind]})"
            for side, kinds in sides.items()
            for kind, n in kinds.items()
        )
        for probe, sides in lost.items()
    ]


def stacks_lost_total(lost: dict[str, dict[str, dict[str, int]]]) -> int:
    return sum(n for sides in lost.values() for kinds in sides.values() for n in kinds.values())
