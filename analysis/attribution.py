"""Tie each kernel DMA/IOMMU event to the CUDA call that caused it.

A call (a uprobe entry/return pair) *brackets* a kernel event when both ran on
the same thread and the event's time lies in [entry, return]. Calls nest
(cudaHostAlloc -> cuMemHostAlloc -> ioctl); an event belongs to the innermost
call that brackets it and counts for every call above that one too.

Events no call brackets (context creation before any probed call, unmaps at
process exit, flush-queue timers) are kept with a hint of where they came
from: the CUDA entry points on their user stack, or their kernel stack's origin.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..tracefile.reader import Trace
from . import columns, dma_events, frames


@dataclass
class Call:
    ev: dict
    parent: Call | None = None
    children: list[Call] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # kernel events it is the innermost call of
    ioctls: list[dict] = field(default_factory=list)
    size_from: str | None = None  # the nested call the size was taken from

    @property
    def ts(self) -> int:
        return self.ev["ts_ns"]

    @property
    def end(self) -> int:
        return self.ev["ts_ns"] + self.ev["dur_ns"]

    @property
    def name(self) -> str:
        return self.ev["probe"]

    @property
    def depth(self) -> int:
        d, p = 0, self.parent
        while p is not None:
            d, p = d + 1, p.parent
        return d

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def all_events(self) -> list[dict]:
        return [e for c in self.walk() for e in c.events]

    def counts(self) -> tuple[Counter, Counter]:
        """Kernel events and bytes per kind, this call and the calls it made."""
        n, b = Counter[str](), Counter[str]()
        for e in self.all_events():
            k = dma_events.kind(e)
            n[k] += 1
            b[k] += e["size"] or 0
        return n, b

    def lower_bound(self) -> set[str]:
        """Kinds whose bytes are a lower bound (an sg list longer than the trace kept)."""
        return {dma_events.kind(e) for e in self.all_events() if e.get("size_lb")}

    def n_ioctls(self) -> int:
        return sum(len(c.ioctls) for c in self.walk())


@dataclass
class Attribution:
    calls: list[Call]  # every call, in time order
    events: list[dict]  # kernel DMA/IOMMU events on threads that made a probed call
    unexplained: list[dict]  # of those, the ones no call brackets
    owner: dict[int, Call]  # id(event) -> innermost call
    # Kernel events on threads that made no probed call (unexplained by
    # construction), as groups of alike events (dma_events.groups, by comm).
    bulk: list[dict] = field(default_factory=list)

    @property
    def top(self) -> list[Call]:
        return [c for c in self.calls if c.parent is None]

    @property
    def n_events(self) -> int:
        return len(self.events) + sum(g["n"] for g in self.bulk)

    @property
    def n_unexplained(self) -> int:
        return len(self.unexplained) + sum(g["n"] for g in self.bulk)


def attribute(trace: Trace) -> Attribution:
    """Per-event work only on threads that made probed calls; the rest in bulk (numpy)."""
    head = columns.read(trace, ["group", "op", "probe", "tid", "dur_ns"], order_by_time=False)
    kern = dma_events.kernel_mask(head)
    call = head.isin("group", dma_events.CALL_GROUPS) & head.valid["dur_ns"]
    on_call_tid = np.isin(head.nums["tid"], np.unique(head.nums["tid"][call]))
    ioctl = head.isin("probe", ["ioctl"]) & head.isin("group", ["syscall"])
    detail = call | (on_call_tid & (ioctl | kern))
    go = dma_events.group_op(head)
    del call, ioctl, head  # the tid, probe and duration columns: ~250 MB at 10 M events
    ev = dma_events.read_kernel_events(trace, more=("tid", "comm"), head=go)
    assert ev.index is not None  # read_kernel_events keeps each row's event position
    del go
    size, valid, lb, inferred = dma_events.prepared_sizes(ev)  # across all threads
    detail_k = on_call_tid[ev.index]
    bulk = dma_events.groups(ev, ~detail_k, trace.stacks, by_comm=True,
                             size=size, valid=valid, lb=lb)  # fmt: skip
    rows = dma_events.event_dicts(trace, detail)
    # The detail rows' sizes as prepared over the whole trace, by event position.
    pos = np.flatnonzero(detail)
    js = np.flatnonzero(detail_k)
    kp = ev.index[js]
    order = np.argsort(kp, kind="stable")
    kp, js = kp[order], js[order]
    match = np.full(len(pos), -1)
    if len(kp):
        hit = np.minimum(np.searchsorted(kp, pos), len(kp) - 1)
        match = np.where(kp[hit] == pos, js[hit], -1)
    for j, r in zip(match.tolist(), rows, strict=True):
        if j >= 0:
            r["size"] = int(size[j]) if valid[j] else None
            r["size_lb"] = bool(lb[j])
            if inferred[j]:
                r["size_inferred"] = True
    rows.sort(key=lambda r: r["ts_ns"])
    a = attribute_rows(rows, prepared=True)
    a.bulk = bulk
    return a


def attribute_rows(rows: list[dict], prepared: bool = False) -> Attribution:
    kev = [r for r in rows if dma_events.is_kernel_event(r)]
    if not prepared:
        dma_events.prepare(kev)
    calls = [Call(r) for r in rows if dma_events.is_call(r)]
    ioctls = [r for r in rows if r["probe"] == "ioctl" and r["group"] == "syscall"]
    per_tid: dict[int, list] = defaultdict(list)
    # Sort key: time, then calls before the events they bracket, outer calls first.
    for c in calls:
        per_tid[c.ev["tid"]].append((c.ts, 0, -c.ev["dur_ns"], c))
    for e in kev:
        per_tid[e["tid"]].append((e["ts_ns"], 1, 0, e))
    for e in ioctls:
        per_tid[e["tid"]].append((e["ts_ns"], 1, 0, e))
    owner: dict[int, Call] = {}
    for items in per_tid.values():
        items.sort(key=lambda t: t[:3])
        stack: list[Call] = []
        for ts, is_event, _, item in items:
            while stack and stack[-1].end < ts:
                stack.pop()
            if not is_event:
                # A call that outlives the open one is not nested in it (probe jitter).
                while stack and stack[-1].end < item.end:
                    stack.pop()
                if stack:
                    item.parent = stack[-1]
                    stack[-1].children.append(item)
                stack.append(item)
            elif stack:
                if item["group"] == "syscall":
                    stack[-1].ioctls.append(item)
                else:
                    stack[-1].events.append(item)
                    owner[id(item)] = stack[-1]
    for c in calls:
        if c.ev["size"] is None:
            sub = next((d for d in c.walk() if d is not c and d.ev["size"] is not None), None)
            if sub is not None:
                c.size_from = sub.name
    unexplained = [e for e in kev if id(e) not in owner]
    return Attribution(calls, kev, unexplained, owner)


def size_of(c: Call) -> int | None:
    if c.ev["size"] is not None:
        return c.ev["size"]
    if c.size_from:
        sub = next(d for d in c.walk() if d.name == c.size_from and d.ev["size"] is not None)
        return sub.ev["size"]
    return None


# ------------------------------------------------------------------ unexplained events


def origin(ev: dict) -> str:
    """A short guess at what caused an event no probed call brackets."""
    user = [frames.parse(s, kernel=False) for s in ev.get("ustack") or []]
    api = [f.fn for f in user if frames.is_cuda_api(f)]
    if api:
        # innermost driver entry point and outermost runtime one: "cudaSetDevice > cuInit"
        names = [api[-1], api[0]] if api[-1] != api[0] else [api[0]]
        return " > ".join(names) + " (user stack; not probed)"
    kernel = [frames.parse(s, kernel=True) for s in ev.get("kstack") or []]
    if kernel:
        fns = {f.fn for f in kernel}
        mod = [f for f in kernel if frames.layer_of(f) in ("nvidia", "nvidia_uvm")]
        if mod:  # the GPU driver's entry point says more than the kernel's
            where = f"{mod[-1].fn} [{mod[-1].obj}]"
        else:  # who called the DMA API
            caller = [f for f in kernel if frames.layer_of(f) not in ("dma_api", "iommu")]
            where = caller[0].fn if caller else kernel[0].fn
        if fns & {"do_exit", "do_group_exit"}:
            how = "process exit"
        elif any("interrupt" in f or f.endswith("_irq") for f in fns):
            how = "interrupt"
        elif any(f.startswith("entry_SYSCALL") for f in fns):
            how = "system call"
        elif "kthread" in fns:
            how = "kernel thread"
        else:
            how = "kernel"
        return f"{how}: {where}"
    if user:
        app = [f for f in user if frames.layer_of(f) == "app" and not f.unknown]
        return f"{app[0].fn} (user stack)" if app else "user stack without names"
    return "no stack"


def unexplained_summary(a: Attribution) -> list[dict]:
    """Unexplained events grouped by thread name and origin, largest first."""
    groups: dict[tuple[str, str], dict] = {}
    for e in [*a.unexplained, *a.bulk]:  # an event, or `n` alike ones
        key = (e["comm"] or "?", origin(e))
        new: dict[str, Any] = {"comm": key[0], "origin": key[1], "events": Counter(),
                               "bytes": Counter(), "probes": Counter(), "lb": set()}  # fmt: skip
        g = groups.setdefault(key, new)
        k = dma_events.kind(e)
        n = e.get("n", 1)
        g["events"][k] += n
        g["bytes"][k] += e["size"] or 0
        if e.get("size_lb"):
            g["lb"].add(k)
        g["probes"][e["probe"]] += n
    return sorted(groups.values(), key=lambda g: -sum(g["events"].values()))


def by_name(a: Attribution) -> list[dict]:
    """Per probed function: calls, how many caused a kernel event, totals."""
    out: dict[str, dict] = {}
    for c in a.calls:
        s = out.setdefault(c.name, {"call": c.name, "group": c.ev["group"], "calls": 0,
                                    "mapping_calls": 0, "dur_ns": 0, "events": Counter(),
                                    "bytes": Counter(), "ioctls": 0, "lb": set()})  # fmt: skip
        n, b = c.counts()
        s["calls"] += 1
        s["mapping_calls"] += bool(n)
        s["dur_ns"] += c.ev["dur_ns"]
        s["events"].update(n)
        s["bytes"].update(b)
        s["ioctls"] += c.n_ioctls()
        s["lb"] |= c.lower_bound()
    return sorted(out.values(), key=lambda s: min(c.ts for c in a.calls if c.name == s["call"]))
