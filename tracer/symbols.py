"""Symbolize stack ids into "function [object]" frames, cached per stack."""

from __future__ import annotations

import bisect
import os
import time

# How often (at most) to reread a process's /proc/PID/maps when an address
# falls outside every mapping we know of (a library dlopen'ed since, or a
# garbage frame left by unwinding code built without frame pointers).
MAPS_REREAD_S = 0.05


def frame(name: bytes | None, module: bytes | None) -> str:
    fn = name.decode(errors="replace") if name else "[unknown]"
    obj = os.path.basename(module.decode(errors="replace")) if module else "?"
    return f"{fn} [{obj}]"


def read_exec_ranges(pid: int) -> list[tuple[int, int]] | None:
    """Sorted (start, end) of the file-backed executable mappings; None if unreadable."""
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                    continue
                lo, _, hi = parts[0].partition("-")
                out.append((int(lo, 16), int(hi, 16)))
    except (OSError, ValueError):
        return None
    out.sort()
    return out


def _in_ranges(ranges: list[tuple[int, int]], addr: int) -> bool:
    i = bisect.bisect_right(ranges, (addr, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= addr < ranges[i][1]


class Symbolizer:
    """Resolve while the process lives: user stacks go stale once it exits.

    BCC's per-process symbol cache reads /proc/PID/maps once, so a library
    loaded later (libcuda, which libcudart dlopens) stays unknown to it. Each
    frame BCC places in no module is checked against the live maps: in a
    mapping that appeared after BCC's cache was built, a newer cache is added
    for the process and resolves that frame; in no mapping at all, it is a
    garbage frame (code without frame pointers) and stays "[unknown] [?]".

    The caches are layered, not rebuilt: BCC loads a module's symbol table on
    the first lookup in it, and for a PyTorch process (libtorch_cuda alone has
    hundreds of thousands of symbols) rebuilding the cache at each dlopen cost
    0.4-0.7 s of recorder CPU per rebuild, seconds per run (docs/recorder-cost.md).
    A newer cache only ever sees the frames the older ones could not place, so
    it loads only the new libraries' symbols.
    """

    def __init__(self, bpf, stack_table) -> None:
        self._bpf = bpf
        self._stacks = stack_table
        self._kernel: dict[int, list[str]] = {}
        self._user: dict[tuple[int, int], list[str]] = {}
        self._ranges: dict[int, list[tuple[int, int]]] = {}  # latest exec mappings per pid
        self._read_at: dict[int, float] = {}  # when those were read
        self._seen: dict[int, set[tuple[int, int]]] = {}  # mappings the newest cache knows
        self._newer: dict[int, list] = {}  # caches made after BCC's, oldest first
        self.refreshes = 0

    def _cache(self, pid: int):
        if pid not in self._bpf._sym_caches:
            # Read the maps first: what BCC then reads is at least as new.
            ranges = read_exec_ranges(pid)
            if ranges is not None:
                self._ranges[pid] = ranges
                self._read_at[pid] = time.monotonic()
            self._seen[pid] = set(ranges or ())
        return self._bpf._sym_cache(pid)

    def _walk(self, stack_id: int) -> list[int]:
        try:
            return list(self._stacks.walk(stack_id))
        except KeyError:
            return []

    def kernel(self, stack_id: int) -> list[str] | None:
        if stack_id < 0:
            return None
        if stack_id not in self._kernel:
            cache = self._bpf._sym_cache(-1)
            self._kernel[stack_id] = [frame(*_resolve(cache, a)) for a in self._walk(stack_id)]
        return self._kernel[stack_id]

    def user(self, pid: int, stack_id: int) -> list[str] | None:
        if stack_id < 0:
            return None
        key = (pid, stack_id)
        hit = self._user.get(key)
        if hit is not None:
            return hit
        addrs = self._walk(stack_id)
        frames = [self._resolve_user(pid, a) for a in addrs]
        verdict = self._classify(pid, [a for a, (_, m) in zip(addrs, frames, strict=True) if not m])
        if verdict == "new" and os.path.exists(f"/proc/{pid}"):
            self._add_cache(pid)
            frames = [
                f if f[1] else self._resolve_user(pid, a)
                for a, f in zip(addrs, frames, strict=True)
            ]
            verdict = "final"
        out = [frame(n, m) for n, m in frames]
        if verdict == "final":
            self._user[key] = out
        return out

    def _resolve_user(self, pid: int, addr: int) -> tuple[bytes | None, bytes | None]:
        name, module = _resolve(self._cache(pid), addr)
        if not module:
            for cache in reversed(self._newer.get(pid, ())):
                name, module = _resolve(cache, addr)
                if module:
                    break
        return name, module

    def _add_cache(self, pid: int) -> None:
        """A cache that knows the mappings made since the newest one (read maps first:
        what BCC then reads is at least as new)."""
        self._seen[pid] = set(read_exec_ranges(pid) or ())
        self._newer.setdefault(pid, []).append(type(self._cache(pid))(pid))
        self.refreshes += 1

    def _classify(self, pid: int, unplaced: list[int]) -> str:
        """For addresses BCC placed in no module: "final" (nothing better to get),
        "new" (in a mapping BCC's cache predates) or "retry" (maps not reread yet)."""
        if not unplaced:
            return "final"
        ranges = self._ranges.get(pid, [])
        if all(_in_ranges(ranges, a) for a in unplaced):
            return self._new_or_final(pid, unplaced)
        now = time.monotonic()
        if now - self._read_at.get(pid, -1e9) < MAPS_REREAD_S:
            return "retry"
        self._read_at[pid] = now
        fresh = read_exec_ranges(pid)
        if fresh is None:  # the process is gone: nothing better to get
            return "final"
        self._ranges[pid] = fresh
        return self._new_or_final(pid, unplaced)

    def _new_or_final(self, pid: int, unplaced: list[int]) -> str:
        seen = self._seen.get(pid, set())
        for a in unplaced:
            for r in self._ranges.get(pid, []):
                if r[0] <= a < r[1] and r not in seen:
                    return "new"
        return "final"

    def forget(self, pid: int) -> None:
        """After exec: the pid's address space, and so its stacks' meaning, changed."""
        self._bpf._sym_caches.pop(pid, None)
        for d in (self._ranges, self._read_at, self._seen, self._newer):
            d.pop(pid, None)
        for key in [k for k in self._user if k[0] == pid]:
            del self._user[key]


def _resolve(cache, addr: int) -> tuple[bytes | None, bytes | None]:
    name, _offset, module = cache.resolve(addr, True)
    return name, module
