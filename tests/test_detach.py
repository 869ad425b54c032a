"""The probes come down after `record`, though the recorder no longer waits for it.

tracer/detach.py hands the attachments' perf events to a holder process that
exits once the recorder has; the kernel unregisters them there. Checked on this
kernel's real uprobes and raw tracepoints: every perf event and raw-tracepoint
link the recording opened is gone shortly after it exits, and the captured
output ends (the holder does not keep the recorder's pipes open).
"""

from __future__ import annotations

import glob
import os
import time

from iommu_trace.tracefile.reader import load

from conftest import cli, requires_bpf

pytestmark = requires_bpf
HOLDER = b"sh\0-c\0read _\0"  # tracer/detach.py's holder, as /proc/PID/cmdline has it


def holders() -> dict[int, int]:
    """Holder processes now, with the perf events each holds."""
    out = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/cmdline", "rb") as f:
                if f.read() != HOLDER:
                    continue
            fds = [os.readlink(x) for x in glob.glob(f"{d}/fd/*")]
        except OSError:
            continue
        out[int(os.path.basename(d))] = sum(x == "anon_inode:[perf_event]" for x in fds)
    return out


def test_probes_are_gone_after_the_recorder_exits(known_calls, tmp_path):
    mine = set(holders())  # another recording's, if one runs beside this test
    out = tmp_path / "d.iot"
    p = cli("record", "-o", str(out), "--uprobe", f"{known_calls}:iot_work", "--",
            known_calls, "3", "0")  # fmt: skip
    assert p.returncode == 0, p.stderr  # returned: the holder has none of its pipes
    meta = load(str(out)).meta
    assert meta["counts"]["iot_work"] == 3
    assert meta["detach"] == "background"  # this kernel has the uprobe PMU
    deadline = time.monotonic() + 60
    while set(holders()) - mine and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(holders()) - mine  # it exited, and its perf events with it
