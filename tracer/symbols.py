"""Symbolize stack ids into "function [object]" frames, cached per stack."""

from __future__ import annotations

import os
import time


def frame(name: bytes | None, module: bytes | None) -> str:
    fn = name.decode(errors="replace") if name else "[unknown]"
    obj = os.path.basename(module.decode(errors="replace")) if module else "?"
    return f"{fn} [{obj}]"


class Symbolizer:
    """Resolve while the process lives: user stacks go stale once it exits."""

    def __init__(self, bpf, stack_table) -> None:
        self._bpf = bpf
        self._stacks = stack_table
        self._kernel: dict[int, list[str]] = {}
        self._user: dict[tuple[int, int], list[str]] = {}
        self._refreshed: dict[int, float] = {}

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
        if key not in self._user:
            addrs = self._walk(stack_id)
            frames = [_resolve(self._bpf._sym_cache(pid), a) for a in addrs]
            if any(n is None for n, _ in frames) and self._may_refresh(pid):
                # Libraries loaded after the symbol cache was built (dlopen of
                # libcuda) are unknown to it: rebuild once and retry.
                self._bpf._sym_caches.pop(pid, None)
                frames = [_resolve(self._bpf._sym_cache(pid), a) for a in addrs]
            self._user[key] = [frame(n, m) for n, m in frames]
        return self._user[key]

    def _may_refresh(self, pid: int) -> bool:
        now = time.monotonic()
        if now - self._refreshed.get(pid, 0.0) < 0.5:
            return False
        self._refreshed[pid] = now
        return True

    def forget(self, pid: int) -> None:
        self._bpf._sym_caches.pop(pid, None)


def _resolve(cache, addr: int) -> tuple[bytes | None, bytes | None]:
    name, _offset, module = cache.resolve(addr, True)
    return name, module
