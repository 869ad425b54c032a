// The fixed part of the BPF program; codegen.py appends one function per
// attached probe target. One event layout for every probe keeps the reader
// simple: v[] holds the catalog's numeric fields in NUMERIC_FIELDS order.
#include <uapi/linux/ptrace.h>

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
    u32 at_least;  // a scatter-list walk stopped at its bound: size/count are lower bounds
    u32 pad;
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
BPF_PERCPU_ARRAY(fired, u64, NPROBES);  // raw-tracepoint count beside a record-path probe
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

static __always_inline void count_fired(u32 p)
{
    u64 *c = fired.lookup(&p);
    if (c)
        *c += 1;
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

#ifdef SG_SIZE
// Sum a u32 member (length or dma_length, at len_off) over the first n entries
// of a scatter list, as for_each_sg() walks it: a chain entry (page_link bit
// 0) points to the next array and holds no data; an end mark (bit 1) stops.
// The verifier keeps a state for every conditional jump it has yet to follow
// and refuses past 8,192 of them, so the loop body is branch-free arithmetic
// (masks, not ifs) and the only jump per entry is the loop's exit. Past
// SG_WALK_MAX slots read, chain links included (4,096 pages of a table from
// sg_alloc_table), or a failed read, the sum is a lower bound and e->at_least
// says so.
static __always_inline u64 sg_sum(struct event *e, const char *sg, s64 n, u32 len_off)
{
    u64 sum = 0, done = n <= 0, failed = 0;
    s64 seen = 0;
    char ent[SG_SIZE];
#pragma clang loop unroll(disable)
    for (int k = 0; k < SG_WALK_MAX; k++) {
        if (done)
            break;
        long rc = bpf_probe_read_kernel(ent, sizeof(ent), sg);
        u64 link = *(u64 *)(ent + SG_PAGE_LINK_OFF);
        u64 chain = link & SG_CHAIN;
        u64 mask = 0 - chain;  // all ones on a chain entry
        u64 next = ((link & ~(SG_CHAIN | SG_END)) & mask) | (((u64)sg + SG_SIZE) & ~mask);
        sum += (u64)(*(u32 *)(ent + len_off)) & ~mask;
        seen += chain ^ 1;
        failed = (u64)rc >> 63;
        done = ((u64)(n - seen - 1) >> 63) | ((link >> 1) & (chain ^ 1) & 1) | failed;
        sg = (const char *)next;
    }
    if (!done || failed)
        e->at_least = 1;
    return sum;
}

static __always_inline u64 sg_first_dma_address(const char *sg)
{
    u64 a = UNKNOWN;
    bpf_probe_read_kernel(&a, sizeof(a), sg + SG_DMA_ADDRESS_OFF);
    return a;
}

static __always_inline u64 sgt_first_dma_address(const char *sgt)
{
    const char *sg = 0;
    bpf_probe_read_kernel(&sg, sizeof(sg), sgt + SGT_SGL_OFF);
    return sg ? sg_first_dma_address(sg) : UNKNOWN;
}
#endif

#ifdef DEV_NAME_OFF
// dev_name(): the kobject's name, at the offset the kernel's BTF gives.
static __always_inline void read_dev_name(struct event *e, const char *dev)
{
    const char *n = 0;
    if (dev)
        bpf_probe_read_kernel(&n, sizeof(n), dev + DEV_NAME_OFF);
    if (n)
        bpf_probe_read_kernel_str(e->dev, sizeof(e->dev), n);
}
#endif
