"""Read the running kernel's BTF: struct layouts and tracepoint prototypes.

The machines we trace run kernels newer than the headers BCC compiles
against (6.18 kernels with 6.1 headers), so a BPF program that reads kernel
structs takes its offsets from BTF, generated into the program at load time.
Only what the probes need is parsed: the type section and its names
(kernel.org Documentation/bpf/btf.rst, "Type encoding").

`subset()` writes a small, valid BTF blob with just the named types and what
their layouts need (pointer targets become forward declarations); the tests'
fixtures are such cut-outs of the kernels at hand.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MAGIC = 0xEB9F
VMLINUX = "/sys/kernel/btf/vmlinux"

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT = 9, 10, 11, 12, 13, 14, 15, 16
DECL_TAG, TYPE_TAG, ENUM64 = 17, 18, 19
_QUALIFIERS = {VOLATILE: "volatile", CONST: "const", RESTRICT: "restrict"}
# Bytes after the 12-byte common header: (fixed, per vlen item).
_EXTRA = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8)}
_EXTRA |= {FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), DECL_TAG: (4, 0), ENUM64: (0, 12)}


class BTFError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield: int  # width in bits, 0 for a plain member


@dataclass(frozen=True)
class Type:
    kind: int
    name: str
    size_or_type: int  # size for INT/STRUCT/UNION/ENUM/FLOAT, else the referenced type
    kind_flag: bool
    members: tuple[Member, ...] = ()  # STRUCT/UNION; FUNC_PROTO params (bit_offset 0)
    extra: tuple[int, ...] = ()  # INT encoding; ARRAY (elem, index, nelems); VAR/DECL_TAG
    items: bytes = b""  # ENUM/ENUM64/DATASEC raw items, kept for subset()


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("too short for a BTF header")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data)
        if magic != MAGIC:
            raise BTFError(f"bad magic {magic:#x} (not BTF, or another byte order)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        base = hdr_len
        self._strings = data[base + str_off : base + str_off + str_len]
        self._sec = data[base + type_off : base + type_off + type_len]
        # One quick pass over the type headers: where each type starts and
        # which types carry each name; types are decoded when first used
        # (a vmlinux has 100,000+, the probes need a few dozen).
        self._pos: list[int] = [0]  # id 0 is void
        self._named: dict[int, list[int]] = {}  # name offset -> type ids
        self._cache: dict[int, Type] = {}
        self.types = _Types(self)
        sec, pos, n = self._sec, 0, len(self._sec)
        unpack = struct.Struct("<II").unpack_from
        while pos < n:
            name_off, info = unpack(sec, pos)
            self._pos.append(pos)
            if name_off:
                self._named.setdefault(name_off, []).append(len(self._pos) - 1)
            fixed, per = _EXTRA.get((info >> 24) & 0x1F, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)

    @classmethod
    def load(cls, path: str | Path = VMLINUX) -> BTF:
        return cls(Path(path).read_bytes())

    def __len__(self) -> int:
        return len(self._pos)

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _decode(self, tid: int) -> Type:
        sec, pos = self._sec, self._pos[tid]
        name_off, info, st = struct.unpack_from("<III", sec, pos)
        pos += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
        fixed, per = _EXTRA.get(kind, (0, 0))
        body = sec[pos : pos + fixed + per * vlen]
        members: tuple[Member, ...] = ()
        extra: tuple[int, ...] = ()
        items = b""
        if kind in (STRUCT, UNION):
            ms = []
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", body, 12 * i)
                bits, off = (m_off >> 24, m_off & 0xFFFFFF) if kflag else (0, m_off)
                ms.append(Member(self._str(m_name), m_type, off, bits))
            members = tuple(ms)
        elif kind == FUNC_PROTO:
            members = tuple(
                Member(self._str(n), t, 0, 0)
                for n, t in (struct.unpack_from("<II", body, 8 * i) for i in range(vlen))
            )
        elif kind in (INT, VAR, DECL_TAG, ARRAY):
            extra = struct.unpack_from(f"<{len(body) // 4}I", body)
        else:
            items = body
        return Type(kind, self._str(name_off), st, kflag, members, extra, items)

    def _ids_named(self, name: str) -> list[int]:
        # BTF keeps each distinct string once: its offset names all its types.
        at = self._strings.find(b"\0" + name.encode() + b"\0")
        return self._named.get(at + 1, []) if at >= 0 else []

    # ------------------------------------------------------------- lookups
    def find(self, name: str, kind: int = STRUCT) -> int:
        for tid in self._ids_named(name):
            if self.types[tid].kind == kind:
                return tid
        raise BTFError(f"no {_KIND_NAMES.get(kind, kind)} {name} in BTF")

    def has(self, name: str, kind: int = STRUCT) -> bool:
        return any(self.types[tid].kind == kind for tid in self._ids_named(name))

    def resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        while tid and self.types[tid].kind in (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG):
            tid = self.types[tid].size_or_type
        return tid

    def sizeof(self, tid: int) -> int:
        tid = self.resolve(tid)
        t = self.types[tid]
        if t is None:
            raise BTFError("void has no size")
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return t.extra[2] * self.sizeof(t.extra[0])
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return t.size_or_type
        raise BTFError(f"{_KIND_NAMES.get(t.kind)} {t.name} has no size")

    def struct_size(self, name: str) -> int:
        return self.sizeof(self.find(name))

    def _member(self, tid: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member), looking into anonymous structs and unions."""
        for m in self.types[self.resolve(tid)].members:
            if m.name == name:
                return m.bit_offset, m
            if not m.name and self.types[self.resolve(m.type)].kind in (STRUCT, UNION):
                inner = self._member(m.type, name)
                if inner:
                    return m.bit_offset + inner[0], inner[1]
        return None

    def field(self, struct_name: str, path: str) -> tuple[int, int]:
        """(byte offset, byte size) of a dotted member path, e.g. ("device", "kobj.name")."""
        tid, bits, size = self.find(struct_name), 0, 0
        for part in path.split("."):
            found = self._member(tid, part)
            if found is None:
                raise BTFError(f"struct {struct_name} has no member {path}")
            off, m = found
            if m.bitfield:
                raise BTFError(f"{struct_name}.{path} is a bit field")
            bits += off
            tid = m.type
            size = self.sizeof(tid)
        if bits % 8:
            raise BTFError(f"{struct_name}.{path} is not byte aligned")
        return bits // 8, size

    def offset(self, struct_name: str, path: str) -> int:
        return self.field(struct_name, path)[0]

    def type_name(self, tid: int) -> str:
        """C spelling of a type, as a prototype writes it: 'struct device *', 'dma_addr_t'."""
        t = self.types[tid]
        if t is None:
            return "void"
        if t.kind == PTR:
            inner = self.type_name(t.size_or_type)
            return inner + ("*" if inner.endswith("*") else " *")
        if t.kind in _QUALIFIERS:
            return f"{_QUALIFIERS[t.kind]} {self.type_name(t.size_or_type)}"
        if t.kind == TYPE_TAG:
            return self.type_name(t.size_or_type)
        if t.kind in (STRUCT, UNION, ENUM, ENUM64) or (t.kind == FWD):
            word = {STRUCT: "struct", UNION: "union", ENUM: "enum", ENUM64: "enum"}.get(
                t.kind, "union" if t.kind_flag else "struct"
            )
            return f"{word} {t.name}" if t.name else f"{word} (anon)"
        if t.kind == FUNC_PROTO:
            return "(function)"
        return t.name

    def trace_proto(self, event: str) -> list[str] | None:
        """Argument types of a tracepoint's TP_PROTO, from its btf_trace_<event> typedef.

        None when the kernel's BTF has no such tracepoint. The typedef is
        `void (*)(void *data, TP_PROTO...)`: the first parameter is dropped.
        """
        if not self.has(f"btf_trace_{event}", TYPEDEF):
            return None
        ptr = self.types[self.find(f"btf_trace_{event}", TYPEDEF)].size_or_type
        proto = self.types[self.types[ptr].size_or_type]
        if proto is None or proto.kind != FUNC_PROTO:
            return None
        return [self.type_name(p.type) for p in proto.members[1:]]

    # ------------------------------------------------------------- cut-outs
    def subset(self, structs: Sequence[str] = (), typedefs: Sequence[str] = ()) -> bytes:
        """A BTF blob with these types in full; types only pointed to become FWDs."""
        full: set[int] = set()
        seen: set[tuple[int, bool]] = set()

        def mark(tid: int, need_full: bool) -> None:
            if not tid or (tid, need_full) in seen:
                return
            seen.add((tid, need_full))
            t = self.types[tid]
            if t.kind in (STRUCT, UNION) and not need_full:
                return
            full.add(tid)
            if t.kind in (STRUCT, UNION):
                for m in t.members:
                    mark(m.type, True)
            elif t.kind == PTR:
                mark(t.size_or_type, False)
            elif t.kind == ARRAY:
                mark(t.extra[0], True)
                mark(t.extra[1], True)
            elif t.kind == FUNC_PROTO:
                mark(t.size_or_type, False)
                for p in t.members:
                    mark(p.type, False)
            elif t.kind in (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG):
                mark(t.size_or_type, need_full)

        roots = [self.find(n) for n in structs] + [self.find(n, TYPEDEF) for n in typedefs]
        for tid in roots:
            mark(tid, True)
        keep = sorted(full | {tid for tid, _ in seen})
        new_id = {old: i + 1 for i, old in enumerate(keep)} | {0: 0}
        strings = bytearray(b"\0")
        offsets: dict[str, int] = {"": 0}

        def s(name: str) -> int:
            if name not in offsets:
                offsets[name] = len(strings)
                strings.extend(name.encode() + b"\0")
            return offsets[name]

        out = bytearray()
        for old in keep:
            t = self.types[old]
            if old not in full:  # a struct or union only pointed to
                out += struct.pack("<III", s(t.name), (FWD << 24) | (t.kind == UNION) << 31, 0)
                continue
            vlen = len(t.members) if t.kind in (STRUCT, UNION, FUNC_PROTO) else 0
            if t.kind in (ENUM, ENUM64, DATASEC):
                vlen = len(t.items) // _EXTRA[t.kind][1]
            info = (t.kind << 24) | vlen | (t.kind_flag << 31)
            st = t.size_or_type
            if t.kind not in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, FWD):
                st = new_id[st]
            out += struct.pack("<III", s(t.name), info, st)
            if t.kind in (STRUCT, UNION):
                for m in t.members:
                    off = (m.bitfield << 24 | m.bit_offset) if t.kind_flag else m.bit_offset
                    out += struct.pack("<III", s(m.name), new_id[m.type], off)
            elif t.kind == FUNC_PROTO:
                for p in t.members:
                    out += struct.pack("<II", s(p.name), new_id[p.type])
            elif t.kind == ARRAY:
                out += struct.pack("<III", new_id[t.extra[0]], new_id[t.extra[1]], t.extra[2])
            elif t.kind in (INT, VAR, DECL_TAG):
                out += struct.pack(f"<{len(t.extra)}I", *t.extra)
            elif t.kind in (ENUM, ENUM64):
                # Enumerator names live in the string table: rewrite their offsets.
                step = _EXTRA[t.kind][1]
                for i in range(vlen):
                    item = t.items[i * step : (i + 1) * step]
                    name = self._str(struct.unpack_from("<I", item)[0])
                    out += struct.pack("<I", s(name)) + item[4:]
        header = struct.pack("<HBBIIIII", MAGIC, 1, 0, 24, 0, len(out), len(out), len(strings))
        return header + bytes(out) + bytes(strings)


class _Types:
    """BTF types by id (0 is void, None), decoded on first use."""

    def __init__(self, btf: BTF):
        self._btf = btf

    def __len__(self) -> int:
        return len(self._btf)

    def __getitem__(self, tid: int) -> Type | None:
        if tid == 0:
            return None
        t = self._btf._cache.get(tid)
        if t is None:
            t = self._btf._cache[tid] = self._btf._decode(tid)
        return t


_INT_WORDS = {"unsigned", "signed", "long", "short", "int", "char"}


def canonical(ctype: str) -> str:
    """One spelling per C type: BTF says 'long unsigned int' where a header says 'unsigned long'."""
    words = ctype.replace("*", " * ").split()
    base = [w for w in words if w != "*"]
    if base and set(base) <= _INT_WORDS:
        if len(base) > 1 and "int" in base:
            base.remove("int")
        base.sort()
    return " ".join(base + ["*"] * words.count("*"))


_KIND_NAMES = {STRUCT: "struct", UNION: "union", TYPEDEF: "typedef", ENUM: "enum"}


@cache
def running() -> BTF | None:
    """The running kernel's BTF, or None where the kernel has none (CONFIG_DEBUG_INFO_BTF off)."""
    try:
        return BTF.load(VMLINUX)
    except (OSError, BTFError):
        return None
