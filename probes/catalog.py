"""Load the probe catalog (catalog.toml) into typed records."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

GROUPS = (
    "dma",
    "iommu-map",
    "iotlb-flush",
    "iova",
    "iommu-time",
    "nvidia",
    "cuda-driver",
    "cuda-runtime",
    "syscall",
    "user",
    "process",
)
KINDS = ("raw_tracepoint", "tracepoint", "kprobe", "uprobe", "syscall")
PATHS = {
    "raw_tracepoint": "raw tracepoint",  # TP_PROTO arguments, no record: no size limit
    "tracepoint": "tracefs record",  # the event's record, as its format file lays it out
    "kprobe": "kprobe",
    "uprobe": "uprobe",
    "syscall": "syscall tracepoints",
}
# Columns an event can fill; the order is the slot order in the BPF event.
NUMERIC_FIELDS = ("addr", "iova", "size", "dir", "count", "flags", "cmd", "ret", "nents")
FIELDS = ("dev", *NUMERIC_FIELDS)
ADDRESS_KINDS = ("pfn", "pointer")


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    kind: str  # raw_tracepoint | tracepoint | kprobe | uprobe | syscall
    name: str  # "sys:event", "func", "lib:symbol", "ioctl"
    ret: bool = False  # also attach the return probe; emit on return with duration
    fields: dict[str, str] = field(default_factory=dict)
    # raw_tracepoint: the TP_PROTO this target was written for, as (name, C type)
    args: tuple[tuple[str, str], ...] = ()
    driver: str | None = None  # only where this IOMMU driver is the active one: intel | amd

    @property
    def event(self) -> str:
        """A tracepoint's event name without its system ("dma:dma_map_sg" -> "dma_map_sg")."""
        return self.name.partition(":")[2] or self.name

    @property
    def library(self) -> str | None:
        return self.name.split(":", 1)[0] if self.kind == "uprobe" else None

    @property
    def symbol(self) -> str:
        return self.name.split(":", 1)[1] if self.kind == "uprobe" else self.name

    @property
    def path(self) -> str:
        """How the event reaches the program, in words (`probes -v`, the trace's metadata)."""
        return PATHS[self.kind]

    def describe(self) -> str:
        suffix = "+ret" if self.ret else ""
        return f"{self.kind}{suffix}:{self.name}"


@dataclass(frozen=True)
class Probe:
    name: str
    group: str
    op: str
    scope: str  # device | task
    targets: tuple[Target, ...]
    default: bool = True
    kstack: bool = False
    ustack: bool = False
    doc: str = ""
    # columns other than addr/iova that hold addresses, pseudonymized like them:
    # "pfn" (a page frame number) or "pointer" (values of 64 KiB and up, so that
    # error codes and small integers stay readable)
    addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    probes: tuple[Probe, ...]
    libraries: dict[str, list[str]]

    def by_name(self, name: str) -> Probe:
        for p in self.probes:
            if p.name == name:
                return p
        raise KeyError(name)


def _target(raw: dict, probe: str) -> Target:
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise CatalogError(f"probe {probe}: each target names exactly one of {KINDS}")
    kind = kinds[0]
    fields = dict(raw.get("fields", {}))
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise CatalogError(f"probe {probe}: unknown fields {sorted(unknown)}")
    args: list[tuple[str, str]] = []
    for a in raw.get("args", []):
        name, sep, ctype = a.partition(":")
        if not sep or not name.strip() or not ctype.strip():
            raise CatalogError(f"probe {probe}: args entry {a!r} is not 'name: C type'")
        args.append((name.strip(), ctype.strip()))
    if raw.get("driver") not in (None, "intel", "amd"):
        raise CatalogError(f"probe {probe}: driver must be intel or amd")
    if kind == "raw_tracepoint" and not args:
        raise CatalogError(f"probe {probe}: a raw_tracepoint target needs its args (TP_PROTO)")
    return Target(
        kind=kind,
        name=raw[kind],
        ret=bool(raw.get("ret", False)),
        fields=fields,
        args=tuple(args),
        driver=raw.get("driver"),
    )


def parse(text: str) -> Catalog:
    data = tomllib.loads(text)
    probes = []
    seen: set[str] = set()
    for raw in data.get("probe", []):
        name = raw["name"]
        if name in seen:
            raise CatalogError(f"probe {name} is defined twice")
        seen.add(name)
        if raw["group"] not in GROUPS:
            raise CatalogError(f"probe {name}: unknown group {raw['group']}")
        if raw.get("scope", "task") not in ("task", "device"):
            raise CatalogError(f"probe {name}: scope must be task or device")
        targets = tuple(_target(t, name) for t in raw.get("target", []))
        addresses = dict(raw.get("addresses", {}))
        for col, kind in addresses.items():
            if col not in NUMERIC_FIELDS or kind not in ADDRESS_KINDS:
                raise CatalogError(
                    f"probe {name}: addresses wants COLUMN = {' or '.join(ADDRESS_KINDS)}"
                )
        if not targets:
            raise CatalogError(f"probe {name} has no target")
        probes.append(
            Probe(
                name=name,
                group=raw["group"],
                op=raw["op"],
                scope=raw.get("scope", "task"),
                targets=targets,
                default=bool(raw.get("default", True)),
                kstack=bool(raw.get("kstack", False)),
                ustack=bool(raw.get("ustack", False)),
                doc=raw.get("doc", ""),
                addresses=addresses,
            )
        )
    return Catalog(probes=tuple(probes), libraries=dict(data.get("libraries", {})))


def load(path: str | Path | None = None) -> Catalog:
    if path is not None:
        return parse(Path(path).read_text())
    return parse(resources.files(__package__).joinpath("catalog.toml").read_text())


def with_user_stack(probe: Probe, names: set[str]) -> Probe:
    """The probe, taking a user stack too where names hold its name or group."""
    return replace(probe, ustack=True) if {probe.name, probe.group} & names else probe


def with_user_stacks(catalog: Catalog, names: set[str]) -> Catalog:
    """record --ustack: the catalog with user stacks on the named probes and groups."""
    return replace(catalog, probes=tuple(with_user_stack(p, names) for p in catalog.probes))


def user_probe(spec: str) -> Probe:
    """An ad-hoc uprobe from the command line, perf-probe style: LIB:SYMBOL[:COL=argN,...].

    Records entry and return (duration, return value) with the user stack;
    arguments are stored only where COL=argN names a column for them
    (e.g. size=arg1), since their meaning is the user's to say.
    """
    fields = {"ret": "ret"}
    head, sep, last = spec.rpartition(":")
    if sep and "=" in last:
        spec = head
        for item in last.split(","):
            col, _, arg = item.partition("=")
            if col not in NUMERIC_FIELDS or not re.fullmatch(r"arg[1-6]", arg):
                raise CatalogError(
                    f"--uprobe field {item!r}: want COLUMN=argN, N 1-6, COLUMN one of "
                    f"{', '.join(NUMERIC_FIELDS)}"
                )
            fields[col] = arg
    lib, sep, sym = spec.rpartition(":")
    if not sep or not lib or not sym:
        raise CatalogError(f"--uprobe wants LIBRARY:SYMBOL[:COL=argN,...], got {spec!r}")
    target = Target(kind="uprobe", name=f"{lib}:{sym}", ret=True, fields=fields)
    return Probe(
        name=sym,
        group="user",
        op="call",
        scope="task",
        targets=(target,),
        ustack=True,
        doc=f"user probe on {lib}:{sym}",
        # the user's function may return or take pointers: redact what looks like one
        addresses={
            c: "pointer" for c in fields if c not in ("size", "count", "dir", "addr", "iova")
        },
    )
