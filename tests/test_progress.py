"""Progress for the slow steps: a spinner on a terminal, stderr's lines unchanged elsewhere."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import threading
import time

from iommu_trace.lab import guest
from iommu_trace.lab.vm import _pump, guest_step
from iommu_trace.render.progress import Steps, step

from conftest import requires_bpf

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_off_a_terminal_only_the_lines_are_written():
    out = io.StringIO()
    s = Steps(out)
    assert not s.terminal
    s("lab: booting 6.1.0 in strict mode")
    s.step("booting the guest (strict)")
    s("vm| guest: 6.1.0-57-amd64")
    s.done()
    assert out.getvalue() == "lab: booting 6.1.0 in strict mode\nvm| guest: 6.1.0-57-amd64\n"


def test_on_a_terminal_the_step_and_its_time_show_and_go():
    out = io.StringIO()
    s = Steps(out, terminal=True)
    s.step("booting the guest (strict)")
    time.sleep(0.3)  # a few refreshes of the spinner
    s("vm| a line said meanwhile")
    s.step("recording the workload in the guest")
    time.sleep(0.3)
    s.done()
    text = ANSI.sub("", out.getvalue())
    assert "booting the guest (strict)" in text and "recording the workload in the guest" in text
    assert "0:00:00" in text  # the step's elapsed time
    assert text.count("vm| a line said meanwhile") == 1
    assert "\x1b[2K" in out.getvalue()  # transient: the spinner line is erased at the end


def test_a_plain_callable_shows_no_step():
    said: list[str] = []
    step(said.append, "booting")  # lab code may be given any line sink
    assert said == []


def test_the_lab_names_the_guest_steps_from_what_the_guest_prints():
    rec = guest.recorder_argv("/tmp/x/trace.iot", ["python3", "-m", "w", "dd"])
    assert "recorder" in guest_step("guest: $ " + " ".join(rec))
    assert guest_step("guest: $ python3 -m w dd") == "running the workload in the guest"
    assert guest_step("iommu-trace: writing /tmp/x/trace.iot") == (
        "recording the workload in the guest"
    )
    assert guest_step("iommu-trace: attached 30 of 41 probes") is None

    class Seen(Steps):
        def __init__(self):
            super().__init__(io.StringIO())
            self.steps: list[str] = []

        def step(self, name: str) -> None:
            self.steps.append(name)

    seen = Seen()
    console = io.StringIO(
        "guest: 6.1.0, nvme 0000:00:04.0 in iommu group 5 type DMA\n"
        "guest: $ " + " ".join(rec) + "\n"
        "iommu-trace: attached 30 of 41 probes\n"
        "iommu-trace: writing /tmp/x/trace.iot\n"
    )
    sink: list[str] = []
    _pump(console, sink, seen)
    assert len(sink) == 4 and seen.steps[-1] == "recording the workload in the guest"
    assert len(seen.steps) == 2


@requires_bpf
def test_record_on_a_terminal_shows_its_start_up_steps(tmp_path):
    """stderr a terminal: the BPF compile shows as a step; the start-up lines stay as they are."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out = tmp_path / "tty.iot"
    cmd = [sys.executable, "-m", "iommu_trace.cli", "record", "-o", str(out), "--", "true"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                       timeout=300)  # fmt: skip
    os.close(slave)
    reader.join(10)
    os.close(master)
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    assert p.returncode == 0, text
    assert "compiling the BPF program for" in text and "attaching" in text
    assert re.search(r"iommu-trace: attached \d+ of \d+ probes", text)
    assert "events written to" in text and out.exists()
