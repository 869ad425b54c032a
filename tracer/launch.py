"""Start the traced command held at a gate, so its pid is followed before it runs."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass

from ..system.procfs import stat_fields


class LaunchError(RuntimeError):
    pass


@dataclass
class Child:
    pid: int
    _gate: int
    _err: int  # CLOEXEC pipe: EOF means exec succeeded

    def release(self) -> None:
        """Let the child exec; raises LaunchError if the exec fails."""
        os.write(self._gate, b"x")
        os.close(self._gate)


def invoking_user() -> tuple[int, int] | None:
    """(uid, gid) of the user behind sudo, or None when not under sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid is None or os.geteuid() != 0:
        return None
    return int(uid), int(gid if gid is not None else pwd.getpwuid(int(uid)).pw_gid)


def give_to_invoker(*paths: str) -> None:
    """Under sudo, make files written as root the invoking user's (theirs to move or delete)."""
    user = invoking_user()
    if user is None:
        return
    for p in paths:
        if os.path.exists(p):
            os.chown(p, *user)


def resolve_command(argv: list[str]) -> str:
    exe = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
    if exe is None or not os.path.exists(exe):
        raise LaunchError(f"command not found: {argv[0]}")
    if not os.access(exe, os.X_OK):
        raise LaunchError(f"command not executable: {argv[0]}")
    return exe


def spawn(argv: list[str], as_user: tuple[int, int] | None) -> Child:
    """Fork a child that waits on a pipe, then drops privileges and execs argv."""
    exe = resolve_command(argv)
    gate_r, gate_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(gate_w)
            os.close(err_r)
            os.read(gate_r, 1)
            os.close(gate_r)
            if as_user is not None:
                uid, gid = as_user
                name = pwd.getpwuid(uid).pw_name
                os.initgroups(name, gid)
                os.setgid(gid)
                os.setuid(uid)
            os.execv(exe, argv)
        except BaseException as e:  # report to the parent, never run the recorder's code
            os.write(err_w, f"{type(e).__name__}: {e}".encode())
        finally:
            os._exit(127)
    os.close(gate_r)
    os.close(err_w)
    return Child(pid, gate_w, err_r)


def exec_error(child: Child) -> str | None:
    """After release(): None if exec succeeded, else the child's error text."""
    data = os.read(child._err, 4096)
    os.close(child._err)
    return data.decode(errors="replace") or None


def descendants(pid: int, proc: str = "/proc") -> list[int]:
    """The running descendants of pid (children, theirs, ...), from each process's ppid.

    `record -p` follows the children a process forks after it attached; these are the
    ones it had forked before (DataLoader's persistent workers, say)."""
    parent: dict[int, int] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        rest = stat_fields(name, proc)
        if rest and len(rest) > 1 and rest[1].isdigit():  # None: gone meanwhile
            parent[int(name)] = int(rest[1])
    kids: dict[int, list[int]] = {}
    for child, ppid in parent.items():
        kids.setdefault(ppid, []).append(child)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return sorted(out)
