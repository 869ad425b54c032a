"""IOMMU performance counters: find them in sysfs, count them with perf_event_open.

Intel VT-d perfmon (Linux >= 6.3, drivers/iommu/intel/perfmon.c) registers
one PMU per remapping unit, named like the unit (`dmar0`), with events such
as `iotlb_lookup`/`iotlb_hit` and, where the hardware has it, a requester-id
filter (`format/filter_requester_id_en`, `format/filter_requester_id`).
AMD's (arch/x86/events/amd/iommu.c) are `amd_iommu_N` with
`mem_iommu_tlb_pte_hit/mis`, `mem_iommu_tlb_pde_hit/mis` and a `devid`
filter. Both count system-wide only (no task context): one counter per event
on one CPU of the PMU's cpumask, read once a second during `record`.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
from dataclasses import dataclass, field

from .fds import lift
from .fsview import FsView

SYSFS = "/sys/bus/event_source/devices"
# Events worth counting, per vendor: what the IOTLB hit/miss rates come from.
WANTED = {
    "intel-vtd": ("iotlb_lookup", "iotlb_hit", "pw_occupancy", "iommu_requests"),
    "amd-iommu": ("mem_trans_total", "mem_iommu_tlb_pte_hit", "mem_iommu_tlb_pte_mis",
                  "mem_iommu_tlb_pde_hit", "mem_iommu_tlb_pde_mis"),
}  # fmt: skip
# hit / lookup pairs for the report: (label, hits, lookups or misses, "lookups"|"misses")
RATES = (
    ("IOTLB hit rate", "iotlb_hit", "iotlb_lookup", "lookups"),
    ("PTE TLB hit rate", "mem_iommu_tlb_pte_hit", "mem_iommu_tlb_pte_mis", "misses"),
    ("PDE TLB hit rate", "mem_iommu_tlb_pde_hit", "mem_iommu_tlb_pde_mis", "misses"),
)
NO_PMU_HINT = (
    "no IOMMU PMU here (Intel VT-d perfmon needs Linux >= 6.3 and hardware with it; "
    "AMD: amd_iommu_N); on Intel, PCM's pcm-iio counts IOTLB lookups/misses in the uncore IIO"
)
PERF_TYPE_SOFTWARE = 1
SOFTWARE = {"cpu-clock": 0, "task-clock": 1}


class PmuError(OSError):
    pass


@dataclass(frozen=True)
class FormatField:
    config: str  # config, config1, config2
    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str) -> FormatField:
        m = re.fullmatch(r"\s*(config[12]?):(\d+)(?:-(\d+))?\s*", text)
        if not m:
            raise ValueError(f"format {text!r}")
        lo = int(m.group(2))
        return cls(m.group(1), lo, int(m.group(3) or lo))

    def place(self, value: int) -> int:
        width = self.hi - self.lo + 1
        if value >> width:
            raise ValueError(f"{value:#x} does not fit in {self.config}:{self.lo}-{self.hi}")
        return value << self.lo


@dataclass(frozen=True)
class Pmu:
    name: str
    vendor: str  # intel-vtd | amd-iommu
    type: int
    cpus: tuple[int, ...]
    events: dict[str, str]  # name -> "event_group=0x3,event=0x001"
    formats: dict[str, FormatField]

    @property
    def requester_filter(self) -> bool:
        return "filter_requester_id" in self.formats or "devid" in self.formats

    def wanted(self) -> list[str]:
        return [e for e in WANTED[self.vendor] if e in self.events]

    def encode(self, event: str, requester_id: int | None = None) -> dict[str, int]:
        """perf_event_attr config words for EVENT, filtered to one requester where supported."""
        words = {"config": 0, "config1": 0, "config2": 0}
        terms = dict(t.split("=", 1) for t in self.events[event].split(",") if "=" in t)
        if requester_id is not None and self.requester_filter:
            if self.vendor == "intel-vtd":
                terms |= {"filter_requester_id_en": "1", "filter_requester_id": hex(requester_id)}
            else:
                terms |= {"devid": hex(requester_id), "devid_mask": "0xffff"}
        for term, value in terms.items():
            f = self.formats.get(term)
            if f is None:
                raise ValueError(f"{self.name}: event {event} uses unknown format {term}")
            words[f.config] |= f.place(int(value, 0))
        return words


def _cpus(text: str | None) -> tuple[int, ...]:
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part.strip():
            out.append(int(part))
    return tuple(out)


def _vendor(name: str) -> str | None:
    if re.fullmatch(r"dmar\d+", name):
        return "intel-vtd"
    if re.fullmatch(r"amd_iommu_\d+", name):
        return "amd-iommu"
    return None


def discover(view: FsView | None = None) -> list[Pmu]:
    """The IOMMU PMUs this machine (or a saved tree, through VIEW) has, in name order."""
    view = view or FsView("/")
    out = []
    for name in view.listdir(SYSFS):
        vendor = _vendor(name)
        base = f"{SYSFS}/{name}"
        type_text = view.read_text(f"{base}/type")
        if vendor is None or type_text is None:
            continue
        events = {}
        for f in view.listdir(f"{base}/events"):
            text = view.read_text(f"{base}/events/{f}")
            if text is not None and not f.endswith((".scale", ".unit")):
                events[f] = text.strip()
        formats = {}
        for f in view.listdir(f"{base}/format"):
            text = view.read_text(f"{base}/format/{f}")
            if text is not None:
                formats[f] = FormatField.parse(text)
        cpus = _cpus(view.read_text(f"{base}/cpumask")) or (0,)
        out.append(Pmu(name, vendor, int(type_text.strip()), cpus, events, formats))
    return out


def requester_id(pci: str) -> int:
    """PCI address (0000:65:00.0) -> requester id (bus << 8 | device << 3 | function)."""
    m = re.fullmatch(r"(?:[0-9a-fA-F]{4}:)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])", pci)
    if not m:
        raise ValueError(f"not a PCI address: {pci!r}")
    bus, dev, fn = (int(m.group(i), 16) for i in (1, 2, 3))
    return bus << 8 | dev << 3 | fn


# ---------------------------------------------------------------- counting

_libc = ctypes.CDLL(None, use_errno=True)
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}.get(os.uname().machine, 298)
_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER8 and below fit; the kernel takes a larger zeroed tail


def _attr(type_: int, config: int, config1: int = 0, config2: int = 0) -> bytes:
    buf = bytearray(_ATTR_SIZE)
    struct.pack_into("=IIQ", buf, 0, type_, _ATTR_SIZE, config)
    struct.pack_into("=Q", buf, 40, 0)  # flags: enabled at open, counting (no sampling)
    struct.pack_into("=QQ", buf, 56, config1, config2)
    return bytes(buf)


def open_counter(type_: int, cpu: int, config: int, config1: int = 0, config2: int = 0) -> int:
    """A system-wide counting perf event on CPU (pid -1); returns its fd."""
    attr = ctypes.create_string_buffer(_attr(type_, config, config1, config2), _ATTR_SIZE)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, attr, -1, cpu, -1, ctypes.c_ulong(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise PmuError(err, f"perf_event_open: {os.strerror(err)}")
    return lift(fd)  # read all recording long: out of libbcc's stray close()'s reach


def read_counter(fd: int) -> int:
    return struct.unpack("=Q", os.read(fd, 8))[0]


@dataclass
class Counter:
    label: str  # "dmar0/iotlb_hit", "software/cpu-clock"
    fd: int
    last: int = 0


@dataclass
class Sampler:
    """Reads every counter once a second; each reading is (t_ns, dt_ns, label, delta)."""

    counters: list[Counter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[tuple[int, int, str, int]] = field(default_factory=list)
    last_ns: int = 0
    period_ns: int = 1_000_000_000

    def start(self, now_ns: int) -> None:
        for c in self.counters:
            c.last = read_counter(c.fd)
        self.last_ns = now_ns

    def tick(self, now_ns: int, force: bool = False) -> list[tuple[int, int, str, int]]:
        if not self.counters or (not force and now_ns - self.last_ns < self.period_ns):
            return []
        out = []
        for c in self.counters:
            v = read_counter(c.fd)
            out.append((self.last_ns, now_ns - self.last_ns, c.label, v - c.last))
            c.last = v
        self.last_ns = now_ns
        self.samples += out
        return out

    def close(self) -> None:
        for c in self.counters:
            os.close(c.fd)
        self.counters = []


def sampler(pmus: list[Pmu], device: str | None = None, software: tuple[str, ...] = ()) -> Sampler:
    """Counters for every wanted event of PMUS (filtered to DEVICE's requester id where the
    PMU can) and the named software events; what could not be opened becomes a note."""
    s = Sampler()
    rid = None
    if device:
        try:
            rid = requester_id(device)
        except ValueError as e:
            s.notes.append(str(e))
    for p in pmus:
        for ev in p.wanted():
            try:
                w = p.encode(ev, rid)
                fd = open_counter(p.type, p.cpus[0], w["config"], w["config1"], w["config2"])
            except (ValueError, PmuError) as e:
                s.notes.append(f"{p.name}/{ev}: {e}")
                continue
            s.counters.append(Counter(f"{p.name}/{ev}", fd))
        if rid is not None and not p.requester_filter:
            s.notes.append(f"{p.name}: no requester-id filter; counts are for every device")
    for name in software:
        try:
            fd = open_counter(PERF_TYPE_SOFTWARE, 0, SOFTWARE[name])
        except PmuError as e:
            s.notes.append(f"software/{name}: {e}")
            continue
        s.counters.append(Counter(f"software/{name}", fd))
    return s


def doctor_line(view: FsView | None = None) -> str:
    pmus = discover(view)
    if not pmus:
        return NO_PMU_HINT
    parts = []
    for p in pmus:
        filt = "requester-id filter" if p.requester_filter else "no requester-id filter"
        parts.append(f"{p.name} ({', '.join(p.wanted()) or 'no IOTLB event'}; {filt})")
    return "IOMMU PMU: " + "; ".join(parts) + " -- record counts them once a second"
