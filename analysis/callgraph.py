"""The joined user+kernel call graph of DMA/IOMMU events, as a networkx DiGraph.

Each kernel DMA/IOMMU event with stacks gives one path, outermost frame first:
its user stack (application -> CUDA runtime -> CUDA driver -> ioctl), then its
kernel stack (syscall entry -> nvidia.ko / nvidia_uvm.ko -> DMA API -> IOMMU).
Paths with the same frames are merged; nodes are functions in their object,
edges carry how many events went through them and how many bytes they mapped.

`--from/--to` cut each path, not the merged graph: a graph made of shared
nodes (ioctl, rm_ioctl) would otherwise join callers to callees that never met.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx

from ..tracefile.reader import Trace
from . import dma_events, frames
from .frames import Frame

NO_KSTACK = "(no kernel stack)"

# Frames kept by --collapse besides each layer's entry and exit frame: the ones
# that say what the driver is doing (RM API, OS descriptor, IOMMU mapping, UVM API).
LANDMARKS = {
    "RmIoctl",
    "Nv04AllocWithAccessSecInfo",
    "Nv04VidHeapControlWithSecInfo",
    "Nv01FreeWithSecInfo",
    "Nv04ControlWithSecInfo",
    "RmCreateOsDescriptor",
    "osCreateMemFromOsDescriptor",
    "sysmemConstruct_IMPL",
    "memdescMapIommu",
    "memdescFree",
    "memdescDestroy",
    "iovaspaceAcquireMapping_IMPL",
    "iovaspaceDestroyMapping_IMPL",
    "osIovaMap",
    "osIovaUnmap",
    "nv_dma_map_alloc",
    "nv_dma_unmap_alloc",
    "nvidia_close",
    "uvm_gpu_map_cpu_pages",
    "uvm_mem_map_gpu_phys",
    "uvm_mem_unmap_gpu_phys",
    "uvm_rm_mem_alloc",
    "uvm_rm_mem_free",
    "add_gpu",
    "remove_gpu",
    "uvm_va_space_destroy",
    "do_exit",
    "__fput",
}
_LANDMARK_RE = re.compile(
    r"^(uvm_api_\w+|nvUvmInterface\w+|iommu_dma_\w+|iommu_map\w*|iommu_unmap\w*)$"
)


class GraphError(ValueError):
    """Nothing to draw; the message says why, in one line."""


@dataclass
class Options:
    from_fn: tuple[str, ...] = ()  # keep paths through any of these, cut above it
    to_fn: tuple[str, ...] = ()  # ... down to the first of these, cut below it
    collapse: bool = False
    keep: tuple[str, ...] = ()  # more frames --collapse keeps
    landmarks: bool = True  # --collapse keeps LANDMARKS too
    app_frames: int = 1  # application frames kept above the outermost CUDA frame
    kinds: tuple[str, ...] = ()  # map, unmap, flush, iova; empty: all
    probes: tuple[str, ...] = ()  # only these probes; empty: all


@dataclass
class Stats:
    events: int = 0  # kernel DMA/IOMMU events considered
    with_stack: int = 0
    no_stack: int = 0
    on_paths: int = 0  # events whose path survived --from/--to
    probes: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------ frames of one event


def _user_part(ustack: list[str] | None, app_frames: int) -> list[Frame]:
    fr = [frames.parse(s, kernel=False) for s in reversed(ustack or [])]
    fr = [f for f in fr if f.obj != "?"]  # frame-pointer garbage past code without them
    cuda = [i for i, f in enumerate(fr) if frames.layer_of(f) in ("cuda_runtime", "cuda_driver")]
    if cuda:
        start = max(0, cuda[0] - app_frames)
    else:
        calls = [i for i, f in enumerate(fr) if frames.layer_of(f) == "syscall"]
        start = max(0, (calls[0] if calls else len(fr)) - app_frames)
    return fr[start:]


# Kernel entries from an interrupt or softirq: below them the stack is the
# interrupted task's, not the event's cause.
IRQ_ENTRY = re.compile(r"(asm_)?common_interrupt|asm_sysvec_\w+|handle_softirqs|__do_softirq")


def event_frames(ev: dict, app_frames: int = 1) -> list[Frame]:
    """The joined stack of one event, outermost frame first; [] if it has no stack."""
    user = _user_part(ev.get("ustack"), app_frames)
    kernel = [frames.parse(s, kernel=True) for s in reversed(ev.get("kstack") or [])]
    entries = [i for i, f in enumerate(kernel) if IRQ_ENTRY.fullmatch(f.fn)]
    if entries:
        # An unmap completed in an interrupt (or a flush from a softirq timer):
        # the path starts at the innermost entry, and no user stack joins it.
        kernel, user = kernel[entries[-1] :], []
    if user and not kernel:
        # The recorder lost this kernel stack; keep the user path and say so.
        kernel = [Frame(NO_KSTACK, ev["probe"], True)]
    return user + kernel


def matches(fr: Frame, name: str) -> bool:
    fn = fr.fn
    if name in (fn, frames.base_name(fn), frames.label(fr, width=10_000)):
        return True
    if re.fullmatch(re.escape(name) + r"(_v\d+)?(_ptds|_ptsz)?", fn):
        return True  # cuMemHostRegister -> cuMemHostRegister_v2
    return any(c in name for c in "*?[") and fnmatch.fnmatchcase(fn, name)


def _any(f: Frame, names: tuple[str, ...]) -> bool:
    return any(matches(f, n) for n in names)


def cut(fr: list[Frame], from_fn: tuple[str, ...], to_fn: tuple[str, ...]) -> list[Frame] | None:
    """The part of a path from the outermost `from_fn` frame to the first `to_fn` below it."""
    start = 0
    if from_fn:
        hit = next((i for i, f in enumerate(fr) if _any(f, from_fn)), None)
        if hit is None:
            return None
        start = hit
    end = len(fr)
    if to_fn:
        hit = next((i for i in range(start, len(fr)) if _any(fr[i], to_fn)), None)
        if hit is None:
            return None
        end = hit + 1
    return fr[start:end]


# ------------------------------------------------------------------ frames -> nodes


@dataclass(frozen=True)
class Node:
    id: str
    fn: str
    obj: str
    layer: str
    label: str
    kernel: bool
    frames: int = 1
    run: bool = False  # a run of frames drawn as one node


def _node(fr: Frame) -> Node:
    layer = frames.layer_of(fr)
    if fr.fn == NO_KSTACK:
        return Node(f"{NO_KSTACK} {fr.obj}", fr.fn, fr.obj, "kernel", NO_KSTACK, True)
    return Node(fr.key, fr.fn, fr.obj, layer, frames.label(fr), fr.kernel)


def _internal(fr: Frame) -> bool:
    # Frames with no usable name: stripped libcuda, cudart linked statically.
    return fr.unknown or fr.fn.startswith("libcudart_static_")


def _kept(fr: list[Frame], opts: Options) -> list[bool]:
    """Which frames --collapse keeps: layer entry/exit, CUDA API, landmarks, endpoints.

    The syscall layer keeps its user-side wrapper and the kernel's handler, not
    the entry frames between them.
    """
    layers = [frames.layer_of(f) for f in fr]
    keep_names = set(opts.keep) | set(opts.from_fn) | set(opts.to_fn)
    out = []
    for i, f in enumerate(fr):
        first = i == 0 or layers[i - 1] != layers[i]
        last = i == len(fr) - 1 or layers[i + 1] != layers[i]
        base = frames.base_name(f.fn)
        out.append(
            last
            or (first and layers[i] != "syscall")
            or (layers[i] == "syscall" and not f.kernel)  # the libc wrapper: ioctl
            or frames.is_cuda_api(f)
            or (opts.landmarks and (base in LANDMARKS or bool(_LANDMARK_RE.match(base))))
            or any(matches(f, n) for n in keep_names)
            or f.fn == NO_KSTACK
        )
    return out


def to_nodes(fr: list[Frame], opts: Options) -> list[Node]:
    """Frames -> nodes: unnamed runs always merge; --collapse merges the frames it drops."""
    kept = _kept(fr, opts) if opts.collapse else [True] * len(fr)
    kept = [k and not _internal(f) for k, f in zip(kept, fr, strict=True)]
    out: list[Node | list[Frame]] = []
    for f, k in zip(fr, kept, strict=True):
        if k:
            out.append(_node(f))
            continue
        run = out[-1] if out and isinstance(out[-1], list) else None
        if run and frames.layer_of(run[0]) == frames.layer_of(f) and run[0].obj == f.obj:
            run.append(f)
        else:
            out.append([f])
    nodes: list[Node] = []
    for i, item in enumerate(out):
        if isinstance(item, Node):
            nodes.append(item)
            continue
        prev = next((x for x in reversed(out[:i]) if isinstance(x, Node)), None)
        nxt = next((x for x in out[i + 1 :] if isinstance(x, Node)), None)
        nodes.append(_run_node(item, prev, nxt))
    return nodes


def _run_node(run: list[Frame], prev: Node | None, nxt: Node | None) -> Node:
    f = run[0]
    layer = frames.layer_of(f)
    # Identity by the named frames around the run and its own ends: the stripped
    # frames under cuMemHostAlloc are not those under cuMemFreeHost, and merging
    # them would join paths that never met.
    p = prev.id if prev else "^"
    n = nxt.id if nxt else "$"
    what = "internal" if all(_internal(x) for x in run) else "frames"
    nid = f"⋯{what} [{f.obj}] {p} > {run[0].fn}..{run[-1].fn} > {n}"
    return Node(nid, f"({what})", f.obj, layer, "⋯", f.kernel, len(run), run=True)


# ------------------------------------------------------------------ the graph


def build(trace: Trace, opts: Options | None = None) -> nx.DiGraph:
    """The graph of a trace's DMA/IOMMU events; `g.graph` holds stats and totals."""
    opts = opts or Options()
    evs = dma_events.kernel_groups(trace)
    return build_from_events(evs, opts, calls=call_counts(trace))


def call_counts(trace: Trace) -> Counter:
    return dma_events.call_counts(trace)


def build_from_events(evs: list[dict], opts: Options, calls: Counter | None = None) -> nx.DiGraph:
    st = Stats()
    paths: dict[tuple[Node, ...], dict] = {}
    for ev in evs:  # an event, or a group of `n` alike (dma_events.groups)
        k = dma_events.kind(ev)
        if opts.kinds and k not in opts.kinds:
            continue
        if opts.probes and ev["probe"] not in opts.probes:
            continue
        n = ev.get("n", 1)
        st.events += n
        st.probes[ev["probe"]] += n
        fr = event_frames(ev, opts.app_frames)
        if not fr:
            st.no_stack += n
            continue
        st.with_stack += n
        seg = cut(fr, opts.from_fn, opts.to_fn)
        if not seg:
            continue
        st.on_paths += n
        key = tuple(to_nodes(seg, opts))
        agg = paths.setdefault(
            key, {"events": Counter(), "bytes": Counter(), "probes": Counter(), "lb": set()}
        )
        agg["events"][k] += n
        agg["bytes"][k] += ev["size"] or 0
        if ev.get("size_lb"):
            agg["lb"].add(k)
        agg["probes"][ev["probe"]] += n
    g = nx.DiGraph()
    tot_ev, tot_by, tot_lb = Counter[str](), Counter[str](), set[str]()
    for agg in paths.values():
        tot_ev.update(agg["events"])
        tot_by.update(agg["bytes"])
        tot_lb |= agg["lb"]
    g.graph.update(stats=st, options=opts, paths=len(paths), events=tot_ev, bytes=tot_by, lb=tot_lb)
    calls = calls or Counter()
    for nodes, agg in paths.items():
        seen: set[str] = set()
        for nd in nodes:
            if nd.id not in g:
                g.add_node(
                    nd.id,
                    fn=nd.fn,
                    obj=nd.obj,
                    layer=nd.layer,
                    label=nd.label,
                    kernel=nd.kernel,
                    frames_min=nd.frames,
                    frames_max=nd.frames,
                    run=nd.run,
                    events=Counter(),
                    bytes=Counter(),
                    lb=set(),
                    probes=Counter(),
                    calls=_calls_of(nd, calls),
                    root=False,
                    leaf=False,
                )
            a = g.nodes[nd.id]
            a["frames_min"] = min(a["frames_min"], nd.frames)
            a["frames_max"] = max(a["frames_max"], nd.frames)
            if nd.id not in seen:  # recursion: count an event once per node
                seen.add(nd.id)
                a["events"].update(agg["events"])
                a["bytes"].update(agg["bytes"])
                a["lb"] |= agg["lb"]
        g.nodes[nodes[0].id]["root"] = True
        g.nodes[nodes[-1].id]["leaf"] = True
        g.nodes[nodes[-1].id]["probes"].update(agg["probes"])
        seen_e: set[tuple[str, str]] = set()
        for a, b in zip(nodes, nodes[1:], strict=False):
            if (a.id, b.id) in seen_e:
                continue
            seen_e.add((a.id, b.id))
            if not g.has_edge(a.id, b.id):
                g.add_edge(a.id, b.id, events=Counter(), bytes=Counter(), lb=set())
            e = g.edges[a.id, b.id]
            e["events"].update(agg["events"])
            e["bytes"].update(agg["bytes"])
            e["lb"] |= agg["lb"]
    return g


def _calls_of(nd: Node, calls: Counter) -> int | None:
    """How often a probed CUDA function was called (all calls, mapping or not)."""
    if nd.kernel or not calls:
        return None
    for probe, n in calls.items():
        if re.fullmatch(re.escape(probe) + r"(_v\d+)?(_ptds|_ptsz)?", nd.fn):
            return n
    return None


# ------------------------------------------------------------------ errors and lookups


def frame_names(evs: list[dict], app_frames: int = 1) -> set[str]:
    names: set[str] = set()
    for ev in evs:
        names.update(frames.base_name(f.fn) for f in event_frames(ev, app_frames))
    return names


def check(g: nx.DiGraph, trace_path: str, evs: list[dict], opts: Options) -> None:
    """Raise GraphError with one clear line when the graph would be empty."""
    if g.number_of_nodes():
        return
    st: Stats = g.graph["stats"]
    if st.events == 0:
        raise GraphError(
            f"{trace_path}: no DMA/IOMMU event to draw (no dma_* or iommu probe fired)"
        )
    if st.with_stack == 0:
        raise GraphError(
            f"{trace_path}: none of its {st.events} DMA/IOMMU events has a kernel or user "
            "stack, so there is no call path to draw (record with a probe catalog that "
            "takes stacks)"
        )
    names = frame_names(evs, opts.app_frames)
    asked = [("--from", n) for n in opts.from_fn] + [("--to", n) for n in opts.to_fn]
    for what, name in asked:
        if not any(matches(Frame(n, "", False), name) for n in names):
            import difflib

            near = difflib.get_close_matches(name, sorted(names), n=4, cutoff=0.5)
            hint = f"; similar: {', '.join(near)}" if near else ""
            raise GraphError(f"{what} {name}: no recorded stack has this frame{hint}")
    src = " or ".join(opts.from_fn) or "its root"
    dst = " or ".join(opts.to_fn) or "its leaf"
    raise GraphError(f"no recorded stack goes from {src} down to {dst}")


def find(g: nx.DiGraph, name: str) -> list[str]:
    """Node ids whose function matches `name`."""
    return [
        n for n, a in g.nodes(data=True) if matches(Frame(a["fn"], a["obj"], a["kernel"]), name)
    ]


def to_json(g: nx.DiGraph) -> dict:
    """The graph as networkx node-link data, counters and sets made plain."""

    def plain(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, Counter):
                v = dict(v)
            elif isinstance(v, set):
                v = sorted(v)
            elif isinstance(v, (Stats, Options)):
                v = {f: plain({f: getattr(v, f)})[f] for f in v.__dataclass_fields__}
            out[k] = v
        return out

    data = nx.node_link_data(g, edges="edges")
    data["graph"] = plain(data["graph"])
    data["nodes"] = [plain(n) for n in data["nodes"]]
    data["edges"] = [plain(e) for e in data["edges"]]
    return data
