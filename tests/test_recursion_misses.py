"""Runs the kernel skips: a kprobe or tracepoint BPF program called while another runs on
that CPU does not run (bpf_prog_active), and its events are in neither the trace nor the
per-probe counters. The recorder reads the skips from each program's fdinfo
(tracer/cost.recursion_misses) into the trace's `missed`.

This kernel has no kprobes, where the kernel counts such skips (kprobe_perf_func calls
trace_call_bpf first). What it shows: the counter is read from real programs, and a
tracepoint program nested in another (A, on getppid()'s entry, calls bpf_trace_printk,
whose tracepoint B is on) is skipped *before* that counter, by perf's own recursion
guard: such skips are not countable, which is why the catalog takes raw tracepoints
(no shared guard) wherever the kernel has them.
"""

from __future__ import annotations

import os

import pytest

from iommu_trace.probes.discover import tracefs
from iommu_trace.tracer import headers
from iommu_trace.tracer.cost import recursion_misses

from conftest import requires_bpf

pytestmark = requires_bpf
CALLS = 500

PROGRAM = r"""
BPF_ARRAY(ran, u64, 2);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != TGID)
        return 0;
    int k = 0;
    u64 *n = ran.lookup(&k);
    if (n)
        __sync_fetch_and_add(n, 1);
    bpf_trace_printk("getppid\n");  // fires bpf_trace:bpf_trace_printk inside this program
    return 0;
}
TRACEPOINT_PROBE(bpf_trace, bpf_trace_printk) {
    int k = 1;
    u64 *n = ran.lookup(&k);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
"""


def test_skips_are_read_from_real_programs():
    bcc = pytest.importorskip("bcc")
    root = tracefs()
    if root is None or not os.path.isdir(os.path.join(root, "events", "bpf_trace")):
        pytest.skip("no bpf_trace:bpf_trace_printk tracepoint here")
    headers.resolve()  # as the recorder does: BCC compiles against these
    b = bcc.BPF(text=PROGRAM.encode(), cflags=[f"-DTGID={os.getpid()}"])
    try:
        inner = b.funcs[b"tracepoint__bpf_trace__bpf_trace_printk"]
        before = recursion_misses(inner.fd)
        assert before == 0  # a new program has skipped nothing
        for _ in range(CALLS):
            os.getppid()
        ran = b["ran"]
        outer_runs, inner_runs = (ran[ran.Key(i)].value for i in (0, 1))
        assert outer_runs == CALLS
        assert inner_runs == 0  # skipped for every printk A made
        # ... by perf_trace_buf_alloc's recursion guard, before trace_call_bpf's counter
        assert recursion_misses(inner.fd) == 0
        outer = b.funcs[b"tracepoint__syscalls__sys_enter_getppid"]
        assert recursion_misses(outer.fd) == 0
    finally:
        b.cleanup()


def test_not_a_bpf_program_says_nothing():
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert recursion_misses(fd) is None
    finally:
        os.close(fd)
