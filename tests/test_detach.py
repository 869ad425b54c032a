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
import subprocess
import sys
import time

from iommu_trace.system import fds
from iommu_trace.tracefile.reader import load
from iommu_trace.tracer import detach

from conftest import cli, requires_bpf

pytestmark = requires_bpf
# what a holder holds: perf events (kprobes, tracefs-made and perf uprobes), BPF links
# (raw tracepoints, uprobe_multi uprobes)
HELD = ("anon_inode:[perf_event]", "anon_inode:bpf_link")


def holders() -> dict[int, int]:
    """Holder processes now, with the probes each holds."""
    out = {}
    for pid in detach.holders():
        try:
            fds = [os.readlink(x) for x in glob.glob(f"/proc/{pid}/fd/*")]
        except OSError:
            continue
        out[pid] = sum(x in HELD for x in fds)
    return out


def test_probes_are_gone_after_the_recorder_exits(known_calls, tmp_path):
    mine = set(holders())  # another recording's, if one runs beside this test
    out = tmp_path / "d.iot"
    p = cli("record", "-o", str(out), "--uprobe", f"{known_calls}:iot_work", "--",
            known_calls, "3", "0")  # fmt: skip
    assert p.returncode == 0, p.stderr  # returned: the holder has none of its pipes
    t = load(str(out))
    assert t.meta["counts"]["iot_work"] == 3
    # this kernel (6.18) has uprobe_multi links: entry and return ran through them
    assert t.meta["uprobes_via"] == "uprobe_multi link" and "uprobes as BPF links" in p.stderr
    ev = t.events[t.events["probe"] == "iot_work"]
    assert sorted(ev["ret"]) == [1, 2, 3] and (ev["dur_ns"] > 0).all()
    assert t.meta["detach"] == "background"
    assert "uprobes as uprobe_multi links" in cli("info", str(out)).stdout
    deadline = time.monotonic() + 60
    while set(holders()) - mine and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(holders()) - mine  # it exited, and its probes with it


def test_perf_event_uprobes_come_down_too(known_calls, tmp_path):
    """--no-uprobe-links: BCC's perf events (the path kernels before 6.6 take), handed to
    the holder the same way."""
    mine = set(holders())
    out = tmp_path / "p.iot"
    p = cli("record", "-o", str(out), "--no-uprobe-links", "--uprobe",
            f"{known_calls}:iot_work", "--", known_calls, "3", "0")  # fmt: skip
    assert p.returncode == 0, p.stderr
    t = load(str(out))
    assert t.meta["uprobes_via"] == "perf event" and "as BPF links" not in p.stderr
    assert "uprobes as perf events" in cli("info", str(out)).stdout
    ev = t.events[t.events["probe"] == "iot_work"]
    assert sorted(ev["ret"]) == [1, 2, 3] and (ev["dur_ns"] > 0).all()
    deadline = time.monotonic() + 60
    while set(holders()) - mine and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(holders()) - mine


def test_attachments_sit_above_the_numbers_libbcc_closes(known_calls, tmp_path):
    """BCC 0.26 closes stale descriptor numbers when it builds a symbol cache
    (system/fds.py): while recording, every probe's perf event and link, and the
    journal, sit at or above fds.floor(), out of its reach."""
    rec = subprocess.Popen(
        [sys.executable, "-m", "iommu_trace.cli", "record", "-o", str(tmp_path / "f.iot"),
         "--uprobe", f"{known_calls}:iot_work", "--", known_calls, "3", "0", "sleep:3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    held: dict[int, str] = {}
    while rec.poll() is None and not any(t.endswith("f.iot") for t in held.values()):
        time.sleep(0.2)
        held = {}
        for x in glob.glob(f"/proc/{rec.pid}/fd/*"):
            try:
                held[int(os.path.basename(x))] = os.readlink(x)
            except OSError:
                pass
    _, err = rec.communicate()
    assert rec.returncode == 0, err
    probes = {fd: t for fd, t in held.items() if t in HELD}
    assert len(probes) >= 3, held  # the uprobe's two links, raw tracepoints, fork
    assert min(probes) >= fds.floor(), probes
    (journal,) = [fd for fd, t in held.items() if t.endswith("f.iot")]
    assert journal >= fds.floor()
    assert load(str(tmp_path / "f.iot")).meta["attachments_closed"] == 0  # checked at the end
