// The fixed part of the BPF program; codegen.py appends one function per
// attached probe target. One event layout for every probe keeps the reader
// simple: v[] holds the catalog's numeric fields in NUMERIC_FIELDS order.
#include <uapi/linux/ptrace.h>
#include <linux/errno.h>

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

#ifdef COUNT_MODE
// record --count: no event leaves the kernel. Each one is counted under its
// probe, device, size bucket and second in a per-CPU hash (no CPU waits for
// another's cache line); the recorder sums the CPUs' values at the end.
struct tally_key {
    u32 probe;
    u32 second;       // whole seconds since origin[0]
    u16 size_bucket;  // 0: the probe has no size; else 1 + the smallest k with size <= 2^k
    u16 at_least;     // a scatter-list walk hit its bound: bytes is a lower bound
    u32 pad;
    char dev[32];
};
struct tally {
    u64 count;
    u64 bytes;
};
BPF_PERCPU_HASH(tallies, struct tally_key, struct tally, COUNT_ENTRIES);
// Set by the recorder: [0] CLOCK_MONOTONIC ns of second 0, before attaching; [1]
// nonzero once it stops counting, so the map and the counters are read at rest
// (the probes stay attached until the recorder is done).
BPF_ARRAY(control, u64, 2);
// Updates the map refused: [probe * 2 + 0] full (-E2BIG), [probe * 2 + 1] other errors.
// Those events are in `counts` and in no tally: the difference is never silent.
BPF_PERCPU_ARRAY(tally_errors, u64, NPROBES * 2);
#elif defined(USE_RINGBUF)
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif
BPF_PERCPU_ARRAY(counts, u64, NPROBES);  // exact, whatever the buffer drops
BPF_PERCPU_ARRAY(drops, u64, NPROBES);
BPF_PERCPU_ARRAY(fired, u64, NPROBES);  // raw-tracepoint count beside a record-path probe
// get_stackid failures per probe: [probe * 8 + (user ? 4 : 0) + kind], kind 0
// -EEXIST (the bucket holds another stack: a hash collision), 1 -ENOMEM (no
// free entry), 2 -EFAULT (no stack to walk), 3 anything else.
BPF_PERCPU_ARRAY(stack_errors, u64, NPROBES * 8);
BPF_PERCPU_ARRAY(scratch, struct event, 1);  // events exceed the 512-byte stack
BPF_HASH(followed, u32, u8, 65536);          // tgids of the followed processes
BPF_HASH(inflight, struct call_key, struct event, 16384);
#ifndef COUNT_MODE
// Without BPF_F_REUSE_STACKID: an id keeps its first stack for the whole
// recording (a colliding stack is lost and counted), so the recorder may
// symbolize an id once (tracer/decode.py).
BPF_STACK_TRACE(stacks, STACK_ENTRIES);
#endif

#ifdef COUNT_MODE
static __always_inline u64 control_word(u32 i)
{
    u64 *v = control.lookup(&i);
    return v ? *v : 0;
}
#endif

static __always_inline int followed_task(void)
{
#ifdef FOLLOW_ALL
    return 1;
#else
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return followed.lookup(&tgid) != 0;
#endif
}

// One function per table: BCC rewrites `table.lookup` only where the table is named.
static __always_inline void count_event(u32 p)
{
    u64 *c = counts.lookup(&p);
    if (c)
        *c += 1;
}

static __always_inline void count_drop(u32 p)
{
    u64 *c = drops.lookup(&p);
    if (c)
        *c += 1;
}

static __always_inline void count_stack_error(u32 i)
{
    u64 *c = stack_errors.lookup(&i);
    if (c)
        *c += 1;
}

static __always_inline void init(struct event *e, u32 probe)
{
    __builtin_memset(e, 0, sizeof(*e));
    u64 id = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->probe = probe;
    e->cpu = bpf_get_smp_processor_id();
    e->kstack = -1;
    e->ustack = -1;
#ifndef COUNT_MODE  // no count key has it
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
#endif
}

// The entry half of a call is built in scratch and parked (below).
static __always_inline struct event *fresh(u32 probe)
{
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (e)
        init(e, probe);
    return e;
}

// Where an event to emit is built, counted first. With the ring buffer that
// is a reservation in the ring itself (no copy); a full ring is a drop.
static __always_inline struct event *out_slot(u32 probe)
{
    count_event(probe);
#ifdef COUNT_MODE  // built where it is counted, never emitted
    u32 zero = 0;
    return scratch.lookup(&zero);
#elif defined(USE_RINGBUF)
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e)
        count_drop(probe);
    return e;
#else
    u32 zero = 0;
    return scratch.lookup(&zero);
#endif
}

static __always_inline struct event *fresh_out(u32 probe)
{
    struct event *e = out_slot(probe);
    if (e)
        init(e, probe);
    return e;
}

#ifdef COUNT_MODE
static __always_inline void count_tally_error(u32 i)
{
    u64 *c = tally_errors.lookup(&i);
    if (c)
        *c += 1;
}

// floor(log2(v)) for v > 0, branch-free (BPF has no count-leading-zeros).
static __always_inline u32 log2_floor(u64 v)
{
    u32 r = (v > 0xffffffffULL) << 5;
    v >>= r;
    u32 s = (v > 0xffff) << 4;
    v >>= s;
    r |= s;
    s = (v > 0xff) << 3;
    v >>= s;
    r |= s;
    s = (v > 0xf) << 2;
    v >>= s;
    r |= s;
    s = (v > 0x3) << 1;
    v >>= s;
    r |= s;
    return r | (u32)(v >> 1);
}

// Count e under its key; has_size: the probe's target fills the size field.
static __always_inline void tally(struct event *e, int has_size)
{
    struct tally_key k;
    __builtin_memset(&k, 0, sizeof(k));
    u64 start = control_word(0);
    k.probe = e->probe;
    k.second = e->ts > start ? (e->ts - start) / 1000000000ULL : 0;
    k.at_least = e->at_least;
    __builtin_memcpy(k.dev, e->dev, sizeof(k.dev));
    u64 size = e->v[SIZE_SLOT], bytes = 0;
    if (has_size && size != UNKNOWN) {
        k.size_bucket = 1 + (size <= 1 ? 0 : log2_floor(size - 1) + 1);
        bytes = size;
    }
    struct tally *v = tallies.lookup(&k);
    if (v) {
        v->count += 1;  // this CPU's copy: no other CPU writes it
        v->bytes += bytes;
        return;
    }
    struct tally init = {.count = 1, .bytes = bytes};
    int rc = tallies.update(&k, &init);
    if (rc)
        count_tally_error(e->probe * 2 + (rc == -E2BIG ? 0 : 1));
}
#else
static __always_inline void emit(void *ctx, struct event *e)
{
#ifdef USE_RINGBUF
    events.ringbuf_submit(e, 0);  // the kernel wakes the consumer only when it is waiting
#else
    if (events.perf_submit(ctx, e, sizeof(*e)) < 0)
        count_drop(e->probe);
#endif
}

static __always_inline s32 stack_id(void *ctx, u32 probe, u64 flags)
{
    s32 id = stacks.get_stackid(ctx, flags);
    if (id < 0) {
        u32 kind = id == -EEXIST ? 0 : id == -ENOMEM ? 1 : id == -EFAULT ? 2 : 3;
        count_stack_error(probe * 8 + (flags & BPF_F_USER_STACK ? 4 : 0) + kind);
    }
    return id;
}
#endif

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
    struct event *e = out_slot(probe);
    if (e) {
        __builtin_memcpy(e, parked, sizeof(*e));
        e->dur = bpf_ktime_get_ns() - e->ts;
    }
    inflight.delete(&k);
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
