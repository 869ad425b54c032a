"""Saved copies of processes' memory maps, to symbolize user stacks after the process is gone.

BCC resolves user addresses through /proc/PID, which vanishes when the
process exits; a workload that exits right after its last CUDA call would
leave those frames unknown. We keep each followed process's last-seen maps
and resolve the leftovers from the ELF files themselves.
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int
    path: str


def read_maps(pid: int) -> list[Mapping] | None:
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    maps = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5]
        # Read through the process's root while it lives (containers), else the path.
        rooted = f"/proc/{pid}/root{path}"
        maps.append(Mapping(lo, hi, int(parts[2], 16), rooted if os.path.exists(rooted) else path))
    maps.sort(key=lambda m: m.start)
    return maps


@cache
def _load_segments(path: str) -> tuple[tuple[int, int, int], ...]:
    """(file offset, vaddr, size) of each PT_LOAD segment of a 64-bit little-endian ELF."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2 or hdr[5] != 1:
            return ()
        (phoff,) = struct.unpack_from("<Q", hdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    segs = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize
        )
        if p_type == 1:  # PT_LOAD
            segs.append((p_offset, p_vaddr, p_filesz))
    return tuple(segs)


@cache
def _symbols(path: str) -> tuple[list[int], list[str]]:
    from bcc import BPF  # noqa: PLC0415

    try:
        pairs = BPF.get_user_functions_and_addresses(path.encode(), b".*")
    except Exception:
        return [], []
    pairs = sorted((addr, name.decode(errors="replace")) for name, addr in pairs if addr)
    return [a for a, _ in pairs], [n for _, n in pairs]


def resolve_offline(maps: list[Mapping], addr: int) -> tuple[str | None, str | None]:
    """(function, object path) of addr from a saved map list and the ELF file."""
    for m in maps:
        if m.start <= addr < m.end:
            break
    else:
        return None, None
    file_off = addr - m.start + m.offset
    try:
        segs = _load_segments(m.path)
    except OSError:
        return None, m.path
    vaddr = next((v + file_off - o for o, v, sz in segs if o <= file_off < o + sz), None)
    if vaddr is None:
        return None, m.path
    addrs, names = _symbols(m.path)
    i = bisect.bisect_right(addrs, vaddr) - 1
    return (names[i] if i >= 0 else None), m.path
