// The fixed part of the BPF program; codegen.py appends one function per
// attached probe target. One event layout for every probe keeps the reader
// simple: v[] holds the catalog's numeric fields in NUMERIC_FIELDS order.
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

// A numeric field the probe could not know (stored as null). Never used for
// ret, where all-ones is a real -1.
#define UNKNOWN 0xffffffffffffffffULL

struct event {
    u64 ts;        // entry time (CLOCK_MONOTONIC ns)
    u64 dur;       // return - entry, 0 for instant events
    u64 v[NFIELDS];
    u32 pid;       // tgid
    u32 tid;
    u32 probe;     // index into the resolved probe list
    s32 kstack;
    s32 ustack;
    u32 cpu;
    char comm[16];
    char dev[32];
};

struct call_key {
    u32 tid;
    u32 probe;
};

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif
BPF_PERCPU_ARRAY(counts, u64, NPROBES);  // exact, whatever the buffer drops
BPF_PERCPU_ARRAY(drops, u64, NPROBES);
BPF_PERCPU_ARRAY(scratch, struct event, 1);  // events exceed the 512-byte stack
BPF_HASH(followed, u32, u8, 65536);          // tgids of the followed processes
BPF_HASH(inflight, struct call_key, struct event, 16384);
BPF_STACK_TRACE(stacks, STACK_ENTRIES);

static __always_inline int followed_task(void)
{
#ifdef FOLLOW_ALL
    return 1;
#else
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return followed.lookup(&tgid) != 0;
#endif
}

static __always_inline struct event *fresh(u32 probe)
{
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    __builtin_memset(e, 0, sizeof(*e));
    u64 id = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->probe = probe;
    e->cpu = bpf_get_smp_processor_id();
    e->kstack = -1;
    e->ustack = -1;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

static __always_inline void emit(void *ctx, struct event *e)
{
    u32 p = e->probe;
    u64 *c = counts.lookup(&p);
    if (c)
        *c += 1;
#ifdef USE_RINGBUF
    if (events.ringbuf_output(e, sizeof(*e), 0) < 0) {
#else
    if (events.perf_submit(ctx, e, sizeof(*e)) < 0) {
#endif
        u64 *d = drops.lookup(&p);
        if (d)
            *d += 1;
    }
}

// Entry half of a call: park the event until the return half completes it.
static __always_inline void park(struct event *e)
{
    struct call_key k = {.tid = e->tid, .probe = e->probe};
    inflight.update(&k, e);
}

static __always_inline struct event *unpark(u32 probe)
{
    struct call_key k = {.tid = (u32)bpf_get_current_pid_tgid(), .probe = probe};
    struct event *parked = inflight.lookup(&k);
    if (!parked)
        return 0;
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    __builtin_memcpy(e, parked, sizeof(*e));
    inflight.delete(&k);
    e->dur = bpf_ktime_get_ns() - e->ts;
    return e;
}

int on_fork(void *ctx)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    if (!followed.lookup(&parent))
        return 0;
    u32 child = *(s32 *)((char *)ctx + FORK_CHILD_OFFSET);
    u8 one = 1;
    followed.update(&child, &one);
    return 0;
}
