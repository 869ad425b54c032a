"""Generate the BPF C program from the resolved catalog.

Tracepoint records are read at the offsets their tracefs `format` file gives,
as perf does, so no tracepoint needs a kernel struct definition to compile.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ..probes.catalog import NUMERIC_FIELDS
from ..probes.discover import Resolution, TpField

_INT = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
_SINT = {1: "s8", 2: "s16", 4: "s32", 8: "s64"}


@dataclass(frozen=True)
class Attachment:
    """One BPF function to attach: what the recorder hands to BCC."""

    index: int  # probe index (event.probe)
    kind: str  # tracepoint | kprobe | kretprobe | uprobe | uretprobe
    target: str  # tracepoint "sys:event", kernel function, or symbol
    fn: str  # BPF function name
    path: str | None = None  # library for uprobes


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


def _reg_dev(spec: str) -> str:
    arg = _reg_arg(spec.removeprefix("devname:"))
    return (
        f"{{ struct device *d = (struct device *){arg}; const char *n = 0; "
        "bpf_probe_read_kernel(&n, sizeof(n), &d->kobj.name); "
        "if (n) bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), n); }"
    )


def _stacks(r: Resolution) -> list[str]:
    lines = []
    if r.probe.kstack:
        lines.append("e->kstack = stacks.get_stackid(ctx, 0);")
    if r.probe.ustack or r.probe.kstack:
        # A user stack only means something in the task that caused the event,
        # not in an interrupt or a kernel thread that happens to be current.
        cond = "" if r.probe.scope == "task" else "if (followed_task()) "
        lines.append(f"{cond}e->ustack = stacks.get_stackid(ctx, BPF_F_USER_STACK);")
    return lines


def _fill(r: Resolution, entry: bool) -> list[str]:
    """Statements that fill e's fields; entry=False fills only return values."""
    t = r.target
    assert t is not None
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
            out.append(_reg_dev(spec))
        else:
            out.append(f"e->v[{NUMERIC_FIELDS.index(col)}] = (u64){_reg_arg(spec)};")
    return out


def _function(name: str, ctx_type: str, body: list[str]) -> str:
    inner = "\n".join("    " + line for line in body)
    return f"int {name}({ctx_type} *ctx)\n{{\n{inner}\n    return 0;\n}}\n"


def _probe_functions(i: int, r: Resolution) -> tuple[list[str], list[Attachment]]:
    t = r.target
    assert t is not None
    ctx_type = "void" if t.kind in ("tracepoint", "syscall") else "struct pt_regs"
    guard = [] if r.probe.scope == "device" else ["if (!followed_task()) return 0;"]
    head = [*guard, f"struct event *e = fresh({i});", "if (!e) return 0;"]
    entry = head + _fill(r, True) + _stacks(r)
    paired = t.ret or t.kind == "syscall"
    funcs: list[str] = []
    atts: list[Attachment] = []
    pre = {"tracepoint": "tp", "syscall": "sc", "kprobe": "kp", "uprobe": "up"}[t.kind]
    fn_in, fn_out = f"{pre}_in_{i}", f"{pre}_out_{i}"
    if not paired:
        funcs.append(_function(fn_in, ctx_type, [*entry, "emit(ctx, e);"]))
    else:
        funcs.append(_function(fn_in, ctx_type, [*entry, "park(e);"]))
        leave = [f"struct event *e = unpark({i});", "if (!e) return 0;", *_fill(r, False)]
        funcs.append(_function(fn_out, ctx_type, [*leave, "emit(ctx, e);"]))
    if t.kind == "tracepoint":
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
) -> tuple[str, list[Attachment]]:
    """C text and the attachments, for the probes with status 'attach' (indexed in order)."""
    template = resources.files(__package__).joinpath("program.c").read_text()
    defines = [
        f"#define NFIELDS {len(NUMERIC_FIELDS)}",
        f"#define NPROBES {max(1, len(resolved))}",
        f"#define RINGBUF_PAGES {ringbuf_pages}",
        f"#define STACK_ENTRIES {stack_entries}",
        f"#define FORK_CHILD_OFFSET {fork_child_offset}",
    ]
    if ringbuf:
        defines.append("#define USE_RINGBUF 1")
    if follow_all:
        defines.append("#define FOLLOW_ALL 1")
    needs_device = any(
        r.target and any(s.startswith("devname:") for s in r.target.fields.values())
        for r in resolved
    )
    includes = ["#include <linux/device.h>"] if needs_device else []
    parts = ["\n".join(defines + includes), template]
    atts: list[Attachment] = []
    for i, r in enumerate(resolved):
        if r.status != "attach":
            continue
        funcs, a = _probe_functions(i, r)
        parts.extend(funcs)
        atts.extend(a)
    return "\n".join(parts), atts
