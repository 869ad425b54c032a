"""/proc/PID/stat, read one way for every caller (the recorder, its cost, the harness)."""

from __future__ import annotations


def stat_fields(pid: int | str, proc: str = "/proc") -> list[str] | None:
    """The fields after comm: [0] is the state, [1] the ppid, [11]/[12] utime/stime in
    clock ticks, [19] the start time; None once the process is gone.

    comm may hold spaces and parentheses, so the fields are counted after the last ')'."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
