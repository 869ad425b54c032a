// LD_PRELOAD: log a backtrace whenever the process closes a perf event or BPF link fd.
// How BCC 0.26's stray close() of a probe was caught in the lab (docs/lab.md):
//   gcc -O1 -g -shared -fPIC -o closewatch.so scripts/closewatch.c -ldl
//   LD_PRELOAD=$PWD/closewatch.so .venv/bin/python3 -m iommu_trace.cli record ... 2>rec.txt
// then look for "CLOSEWATCH" blocks with libbcc frames (the recorder's own closes
// of attachments happen only when it lifts them, right after attaching).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static int (*real_close)(int);

int close(int fd)
{
    if (!real_close)
        real_close = dlsym(RTLD_NEXT, "close");
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n > 0) {
        target[n] = 0;
        if (strstr(target, "perf_event") || strstr(target, "bpf_link")) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            char msg[256];
            int m = snprintf(msg, sizeof msg, "CLOSEWATCH pid %d fd %d %s at %ld.%09ld\n",
                             getpid(), fd, target, ts.tv_sec, ts.tv_nsec);
            write(2, msg, m);
            void *frames[40];
            int k = backtrace(frames, 40);
            backtrace_symbols_fd(frames, k, 2);
            write(2, "CLOSEWATCH end\n", 15);
        }
    }
    return real_close(fd);
}
