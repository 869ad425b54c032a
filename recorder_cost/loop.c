/* Tight loops for the tracer's overhead benchmark.
 *   loop call N    N calls of bench_call (a uprobe target); prints ns per call
 *   loop ioctl N   N ioctl(FIONREAD) system calls; prints ns per call
 *   loop getppid N [RATE]
 *                  N getppid() system calls (the cheapest: an event source
 *                  for the recorder's event rate, recorder_cost/rate.py),
 *                  at most RATE a second if given (busy-waiting between calls)
 *   loop wait-getppid N [RATE]
 *                  the same once a byte arrives on stdin: a recorder that follows
 *                  the loop with -p sees its system calls from then on, and none
 *                  of its start-up (tests/test_count_mode.py)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) unsigned long bench_call(unsigned long x)
{
    sink += x;
    return x;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    int fds[2], avail;
    if (pipe(fds))
        return 3;
    if (!strcmp(argv[1], "wait-getppid")) {
        char go;
        if (read(0, &go, 1) != 1)
            return 4;
        argv[1] = "getppid";
    }
    double t0 = now_ns();
    if (!strcmp(argv[1], "call"))
        for (long i = 0; i < n; i++)
            bench_call(i);
    else if (!strcmp(argv[1], "getppid") && argc > 3) {
        double gap = 1e9 / atof(argv[3]);
        for (long i = 0; i < n; i++) {
            while (now_ns() - t0 < i * gap)
                ;
            syscall(SYS_getppid);
        }
    } else if (!strcmp(argv[1], "getppid"))
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid); /* not glibc's getppid(), which may be cached */
    else
        for (long i = 0; i < n; i++)
            ioctl(fds[0], FIONREAD, &avail);
    double t1 = now_ns();
    printf("%.1f ns/op %.3f s\n", (t1 - t0) / n, (t1 - t0) / 1e9);
    usleep(300 * 1000); /* symbolization happens while the process lives */
    return 0;
}
