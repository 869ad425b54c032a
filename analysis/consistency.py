"""Counts that must agree and do not: the kernel ran one probe's program and not another's.

Two probes on the same kernel function (`iotlb_sync` counts intel_iommu_tlb_sync's
entries, `t_iotlb_sync` times the same calls) see every call, so their exact counts
differ only by the calls in flight when the recording stopped. Seen in the lab (Debian
6.12, emulated VT-d): after a module was unloaded, the instant probe's program stopped
running for good while the timed one on the same function went on; no counter of the
kernel's (fdinfo recursion_misses, the kprobe's missed count) said so. A report that
counts flushes from the first would then say strict mode flushes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tracefile.meta import TraceMeta

KPROBE_KINDS = ("kprobe", "kprobe+ret")
IN_FLIGHT = 2  # calls entered, not returned, when the probes were read (per probe pair)


@dataclass(frozen=True)
class Disagreement:
    function: str
    counts: dict[str, int]  # probe -> its exact count

    def line(self) -> str:
        said = ", ".join(f"{k} {v:,}" for k, v in self.counts.items())
        return (
            f"probes on the same kernel function {self.function} disagree ({said}): the "
            "kernel stopped running one of their programs; counts from the lower are low"
        )


def kprobe_function(target: str) -> str | None:
    kind, _, fn = target.partition(":")
    return fn if kind in KPROBE_KINDS and fn else None


def disagreements(m: TraceMeta) -> list[Disagreement]:
    """Attached kprobes sharing a function whose exact counts differ by more than the
    calls that can be in flight."""
    by_fn: dict[str, dict[str, int]] = {}
    for p in m.probes:
        fn = kprobe_function(p.target) if p.attached else None
        n = m.counts.get(p.name)
        if fn is not None and isinstance(n, int):
            by_fn.setdefault(fn, {})[p.name] = n
    out = []
    for fn, counts in by_fn.items():
        if len(counts) > 1 and max(counts.values()) - min(counts.values()) > IN_FLIGHT:
            out.append(Disagreement(fn, counts))
    return out
