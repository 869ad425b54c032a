"""Generate the BPF C program from the resolved catalog.

Tracepoint records are read at the offsets their tracefs `format` file gives,
as perf does; raw tracepoints get the TP_PROTO arguments themselves, and the
kernel structs they point to are read at offsets from the running kernel's
BTF, written into the program as constants. No probe needs a kernel struct
definition from headers, which may belong to another kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ..probes.btf import BTF, BTFError
from ..probes.catalog import NUMERIC_FIELDS, Target
from ..probes.discover import Resolution, TpField

_INT = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
_SINT = {1: "s8", 2: "s16", 4: "s32", 8: "s64"}


@dataclass(frozen=True)
class Attachment:
    """One BPF function to attach: what the recorder hands to BCC."""

    index: int  # probe index (event.probe)
    kind: str  # raw_tracepoint | tracepoint | kprobe | kretprobe | uprobe | uretprobe
    target: str  # tracepoint "sys:event", kernel function, or symbol
    fn: str  # BPF function name
    path: str | None = None  # library for uprobes
    optional: bool = False  # a failure leaves the probe attached (loss counters)


class CodegenError(ValueError):
    pass


def _tp_read(f: TpField) -> str:
    if f.data_loc:
        raise CodegenError(f"field {f.name} is a string; only dev may hold one")
    if f.size not in _INT:
        raise CodegenError(f"field {f.name} has unsupported size {f.size}")
    ty = _SINT[f.size] if f.signed else _INT[f.size]
    return f"(u64)(*({ty} *)((char *)ctx + {f.offset}))"


def _tp_array(reduce: str, f: TpField, slot: int, truncated: TpField | None) -> str:
    """Reduce a __data_loc array (scatter-gather lists) to one number.

    Where the tracepoint keeps only part of the list (6.18's dma_map_sg keeps
    128 entries and sets `truncated`), the reduction is UNKNOWN, not partial.
    """
    if not f.data_loc:
        raise CodegenError(f"{reduce}: field {f.name} is not an array")
    loc = f"*(u32 *)((char *)ctx + {f.offset})"
    base = f"((char *)ctx + ({loc} & 0xffff))"
    nbytes = f"({loc} >> 16)"
    if reduce == "nelem64":
        return f"e->v[{slot}] = {nbytes} / 8;"
    if reduce == "first64":
        return f"if ({nbytes} >= 8) bpf_probe_read_kernel(&e->v[{slot}], 8, {base});"
    if reduce == "sum32":
        cut = f"*(u8 *)((char *)ctx + {truncated.offset})" if truncated else "0"
        return (
            f"{{ u32 n = {nbytes} / 4; u64 sum = 0; char *p = {base};\n"
            "      for (int k = 0; k < 256 && k < n; k++) { u32 x = 0; "
            "bpf_probe_read_kernel(&x, 4, p + 4 * k); sum += x; }\n"
            f"      e->v[{slot}] = {cut} ? UNKNOWN : sum; }}"
        )
    raise CodegenError(f"unknown array reduction {reduce}")


def _tp_dev(f: TpField) -> str:
    if f.data_loc:
        return (
            f"{{ u32 loc = *(u32 *)((char *)ctx + {f.offset}); "
            "bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), (char *)ctx + (loc & 0xffff)); }"
        )
    return f"bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), (char *)ctx + {f.offset});"


def _reg_arg(spec: str) -> str:
    n = int(spec.removeprefix("arg"))
    if not 1 <= n <= 6:
        raise CodegenError(f"{spec}: only arguments 1-6 are in registers")
    return f"PT_REGS_PARM{n}(ctx)"


def _reg_dev(spec: str, btf: BTF | None) -> str:
    arg = _reg_arg(spec.removeprefix("devname:"))
    if btf is not None:
        return f"read_dev_name(e, (const char *){arg});"
    return (
        f"{{ struct device *d = (struct device *){arg}; const char *n = 0; "
        "bpf_probe_read_kernel(&n, sizeof(n), &d->kobj.name); "
        "if (n) bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), n); }"
    )


def _stacks(r: Resolution) -> list[str]:
    lines = []
    if r.probe.kstack:
        lines.append("e->kstack = stack_id(ctx, e->probe, 0);")
    if r.probe.ustack or r.probe.kstack:
        # A user stack only means something in the task that caused the event,
        # not in an interrupt or a kernel thread that happens to be current.
        cond = "" if r.probe.scope == "task" else "if (followed_task()) "
        lines.append(f"{cond}e->ustack = stack_id(ctx, e->probe, BPF_F_USER_STACK);")
    return lines


# C types whose value a raw tracepoint argument (a u64) holds in its low bits.
_SIGNED32 = {"int"}
_UNSIGNED32 = {"unsigned int", "unsigned", "gfp_t"}


def _raw_arg(t: Target, name: str) -> str:
    for i, (arg, ctype) in enumerate(t.args):
        if arg == name:
            v = f"ctx->args[{i}]"
            if ctype in _SIGNED32:
                return f"(u64)(s64)(s32){v}"
            if ctype in _UNSIGNED32 or ctype.startswith("enum "):
                return f"(u64)(u32){v}"
            return f"(u64){v}"
    raise CodegenError(f"{t.name}: no argument {name}")


def _raw_fill(t: Target) -> list[str]:
    """Statements that fill e's fields from a raw tracepoint's arguments."""
    out = []
    for col, spec in t.fields.items():
        op, *args = spec.split(":") if ":" in spec else ("", spec)
        ptr = f"(const char *){_raw_arg(t, args[0])}"
        if col == "dev":
            if op != "devname":
                raise CodegenError(f"{t.name}: dev must be devname:ARG")
            out.append(f"read_dev_name(e, {ptr});")
            continue
        slot = f"e->v[{NUMERIC_FIELDS.index(col)}]"
        if op == "":
            out.append(f"{slot} = {_raw_arg(t, args[0])};")
        elif op in ("sg_len", "sg_dma_len"):
            off = "SG_LENGTH_OFF" if op == "sg_len" else "SG_DMA_LENGTH_OFF"
            out.append(f"{slot} = sg_sum(e, {ptr}, (s64){_raw_arg(t, args[1])}, {off});")
        elif op == "sg_dma_address":
            out.append(f"{slot} = sg_first_dma_address({ptr});")
        elif op == "sgt_dma_address":
            out.append(f"{slot} = sgt_first_dma_address({ptr});")
        else:
            raise CodegenError(f"{t.name}: unknown field reader {op}")
    return out


def btf_defines(btf: BTF) -> list[str]:
    """The struct offsets the readers in program.c use, from the running kernel's BTF."""
    out = [f"#define DEV_NAME_OFF {btf.offset('device', 'kobj.name')}"]
    try:
        sg = {m: btf.offset("scatterlist", m) for m in ("page_link", "length", "dma_address")}
        try:
            sg["dma_length"] = btf.offset("scatterlist", "dma_length")
        except BTFError:  # no CONFIG_NEED_SG_DMA_LENGTH: sg_dma_len() is length
            sg["dma_length"] = sg["length"]
        out += [f"#define SG_{m.upper()}_OFF {off}" for m, off in sg.items()]
        out += [
            f"#define SG_SIZE {btf.struct_size('scatterlist')}",
            f"#define SGT_SGL_OFF {btf.offset('sg_table', 'sgl')}",
            "#define SG_CHAIN 0x1ULL",  # include/linux/scatterlist.h SG_CHAIN, SG_END
            "#define SG_END 0x2ULL",
            f"#define SG_WALK_MAX {SG_WALK_MAX}",
        ]
    except BTFError:
        pass  # no scatterlist in BTF: the sg readers are not compiled (discovery refused them)
    return out


# List entries one scatter-list walk reads before it gives up ("at least"):
# 4,096 pages (16 MiB of 4 KiB pages) of a list from sg_alloc_table(), which
# spends one slot of every 128 on the link to the next chunk, and the walk
# reads those links too. The verifier follows the loop once per iteration and
# keeps one pending state per iteration (its limit is 8,192).
SG_MAX_PAGES = 4096
SG_CHUNK = 128  # SG_MAX_SINGLE_ALLOC with 4 KiB pages: 127 entries and a chain link
SG_WALK_MAX = SG_MAX_PAGES + -(-SG_MAX_PAGES // (SG_CHUNK - 1))  # 4,129 slots read


def _fill(r: Resolution, entry: bool, btf: BTF | None = None) -> list[str]:
    """Statements that fill e's fields; entry=False fills only return values."""
    t = r.target
    assert t is not None
    if t.kind == "raw_tracepoint":
        return _raw_fill(t) if entry else []
    out = []
    for col, spec in t.fields.items():
        is_ret = spec == "ret"
        if is_ret == entry:
            continue
        if t.kind in ("tracepoint", "syscall"):
            reduce, _, name = spec.rpartition(":")
            f = r.tp_fields[name]
            if reduce:
                slot = NUMERIC_FIELDS.index(col)
                out.append(_tp_array(reduce, f, slot, r.tp_fields.get("truncated")))
            elif col == "dev":
                out.append(_tp_dev(f))
            else:
                out.append(f"e->v[{NUMERIC_FIELDS.index(col)}] = {_tp_read(f)};")
        elif is_ret:
            out.append(f"e->v[{NUMERIC_FIELDS.index(col)}] = (u64)PT_REGS_RC(ctx);")
        elif col == "dev":
            out.append(_reg_dev(spec, btf))
        elif spec.startswith("sg_len:"):
            out.append(_reg_sg_len(spec, NUMERIC_FIELDS.index(col), btf))
        else:
            out.append(f"e->v[{NUMERIC_FIELDS.index(col)}] = (u64){_reg_arg(spec)};")
    return out


def _reg_sg_len(spec: str, slot: int, btf: BTF | None) -> str:
    """sg_len:argS:argN on a kprobe: the list's total length, walked at entry (needs BTF)."""
    _, sgl, n = spec.split(":")
    if btf is None or not btf.has("scatterlist"):
        return f"e->v[{slot}] = UNKNOWN;  // no BTF: the scatter list's layout is unknown"
    return (
        f"e->v[{slot}] = sg_sum(e, (const char *){_reg_arg(sgl)}, "
        f"(s64)(int){_reg_arg(n)}, SG_LENGTH_OFF);"
    )


def _function(name: str, ctx_type: str, body: list[str]) -> str:
    inner = "\n".join("    " + line for line in body)
    return f"int {name}({ctx_type} *ctx)\n{{\n{inner}\n    return 0;\n}}\n"


def _probe_functions(
    i: int, r: Resolution, btf: BTF | None, count: bool = False
) -> tuple[list[str], list[Attachment]]:
    """The probe's BPF functions and their attachments. count: each event is counted
    in the kernel's map (tally) instead of emitted, and no stack is taken."""
    t = r.target
    assert t is not None
    ctx_type = {
        "tracepoint": "void",
        "syscall": "void",
        "raw_tracepoint": "struct bpf_raw_tracepoint_args",
    }.get(t.kind, "struct pt_regs")
    guard = [] if r.probe.scope == "device" else ["if (!followed_task()) return 0;"]
    if count:  # stopped: nothing more is counted, in the counters or the map
        guard.insert(0, "if (control_word(1)) return 0;")
    paired = t.ret or t.kind == "syscall"
    # an instant event is built where it is emitted (the ring); a call's entry is parked
    head = [
        *guard,
        f"struct event *e = {'fresh' if paired else 'fresh_out'}({i});",
        "if (!e) return 0;",
    ]
    entry = head + _fill(r, True, btf) + ([] if count else _stacks(r))
    out = f"tally(e, {int('size' in t.fields)});" if count else "emit(ctx, e);"
    funcs: list[str] = []
    atts: list[Attachment] = []
    pre = {"raw_tracepoint": "rtp", "tracepoint": "tp", "syscall": "sc", "kprobe": "kp"}.get(
        t.kind, "up"
    )
    fn_in, fn_out = f"{pre}_in_{i}", f"{pre}_out_{i}"
    if not paired:
        funcs.append(_function(fn_in, ctx_type, [*entry, out]))
    else:
        funcs.append(_function(fn_in, ctx_type, [*entry, "park(e);"]))
        leave = [f"struct event *e = unpark({i});", "if (!e) return 0;", *_fill(r, False, btf)]
        funcs.append(_function(fn_out, ctx_type, [*leave, out]))
    if t.kind == "raw_tracepoint":
        atts.append(Attachment(i, "raw_tracepoint", t.event, fn_in))
    elif t.kind == "tracepoint":
        atts.append(Attachment(i, "tracepoint", t.name, fn_in))
    elif t.kind == "syscall":
        atts.append(Attachment(i, "tracepoint", f"syscalls:sys_enter_{t.name}", fn_in))
        atts.append(Attachment(i, "tracepoint", f"syscalls:sys_exit_{t.name}", fn_out))
    elif t.kind == "kprobe":
        atts.append(Attachment(i, "kprobe", t.name, fn_in))
        if paired:
            atts.append(Attachment(i, "kretprobe", t.name, fn_out))
    else:
        for path in r.paths:
            atts.append(Attachment(i, "uprobe", t.symbol, fn_in, path))
            if paired:
                atts.append(Attachment(i, "uretprobe", t.symbol, fn_out, path))
    return funcs, atts


def generate(
    resolved: list[Resolution],
    *,
    fork_child_offset: int,
    follow_all: bool,
    ringbuf: bool,
    ringbuf_pages: int = 1024,
    stack_entries: int = 16384,
    btf: BTF | None = None,
    count_entries: int | None = None,
) -> tuple[str, list[Attachment]]:
    """C text and the attachments, for the probes with status 'attach' (indexed in order).

    count_entries: record --count, a per-CPU hash of that many keys counts the events
    in the kernel; none is emitted and no stack is taken.

    With the kernel's BTF, struct reads use its offsets, and every system-wide
    probe on the tracefs record path also gets a raw-tracepoint counter of the
    same event (`fired`): the kernel runs no program for a record it could
    not build, so fired minus counted is what it withheld.
    """
    template = resources.files(__package__).joinpath("program.c").read_text()
    defines = [
        f"#define NFIELDS {len(NUMERIC_FIELDS)}",
        f"#define NPROBES {max(1, len(resolved))}",
        f"#define RINGBUF_PAGES {ringbuf_pages}",
        f"#define STACK_ENTRIES {stack_entries}",
        f"#define FORK_CHILD_OFFSET {fork_child_offset}",
    ]
    count = count_entries is not None
    if count:
        defines += [
            "#define COUNT_MODE 1",
            f"#define COUNT_ENTRIES {count_entries}",
            f"#define SIZE_SLOT {NUMERIC_FIELDS.index('size')}",
        ]
    elif ringbuf:
        defines.append("#define USE_RINGBUF 1")
    if follow_all:
        defines.append("#define FOLLOW_ALL 1")
    needs_device = any(
        r.target and any(s.startswith("devname:") for s in r.target.fields.values())
        for r in resolved
    )
    if btf is not None:
        defines += btf_defines(btf)
    includes = ["#include <linux/device.h>"] if needs_device and btf is None else []
    parts = ["\n".join(defines + includes), template]
    atts: list[Attachment] = []
    for i, r in enumerate(resolved):
        if r.status != "attach":
            continue
        funcs, a = _probe_functions(i, r, btf, count)
        parts.extend(funcs)
        atts.extend(a)
        if btf is not None and loss_counted(r, btf):
            fn = f"rtp_fired_{i}"
            parts.append(_function(fn, "struct bpf_raw_tracepoint_args", [f"count_fired({i});"]))
            assert r.target is not None  # loss_counted holds only for attached probes
            atts.append(Attachment(i, "raw_tracepoint", r.target.event, fn, optional=True))
    return "\n".join(parts), atts


def loss_counted(r: Resolution, btf: BTF) -> bool:
    """A system-wide tracefs-record probe whose event the kernel also offers as a raw tracepoint."""
    t = r.target
    return bool(
        t
        and t.kind == "tracepoint"
        and r.probe.scope == "device"
        and btf.trace_proto(t.event) is not None
    )
