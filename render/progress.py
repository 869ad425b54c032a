"""Progress for the slow steps: the lab's boot, workload and copy-out, record's BPF compile.

On a terminal, one transient line on stderr: a spinner, the step's name and how long
it has run, gone when the steps end; the lines said meanwhile print above it. Anywhere
else (a pipe, a log file, a test) only those lines, exactly as said, so what scripts
read from stderr stays the same.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, Any


class Steps:
    """A callable for progress lines that also shows which slow step is running."""

    def __init__(self, file: IO[str] | None = None, terminal: bool | None = None) -> None:
        self._file = file  # None: sys.stderr as it is at each line
        out = file if file is not None else sys.stderr
        self.terminal = _isatty(out) if terminal is None else terminal
        self._lock = threading.Lock()
        self._bar: Any = None  # rich.progress.Progress while a step shows
        self._task: Any = None
        self._console: Any = None
        if self.terminal:
            from rich.console import Console  # noqa: PLC0415  (rich only on a terminal)

            if file is None:
                # a file of its own on the terminal: record points fd 2 at a file while
                # clang compiles, and the spinner must neither stop nor land in there
                file = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
            self._console = Console(file=file, force_terminal=True, highlight=False)

    def __call__(self, line: str) -> None:
        if self._console is None:
            print(line, file=self._file or sys.stderr, flush=True)
            return
        from rich.text import Text  # noqa: PLC0415

        self._console.print(Text(line), soft_wrap=True)  # above the spinner, never markup

    def step(self, name: str) -> None:
        """The step now running (the one before it is over); nothing shows off a terminal."""
        if self._console is None:
            return
        with self._lock:
            if self._bar is None:
                from rich.progress import (  # noqa: PLC0415
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._bar = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=self._console,
                    transient=True,
                    redirect_stdout=False,  # stdout is the command's (and the data's)
                )
                self._bar.start()
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(name, total=None)

    def done(self) -> None:
        """No step runs now: the spinner line goes away."""
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
            self._bar = self._task = None


def _isatty(f: IO[str]) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is no terminal
        return False


def step(progress: Any, name: str) -> None:
    """Name the step now running, where `progress` is a Steps (a plain callable shows none)."""
    if isinstance(progress, Steps):
        progress.step(name)
