/* A workload whose calls are known in number, for the recorder's tests.
 *
 *   known_calls CALLS IOCTLS [EXIT|crash|sleep:SECONDS]
 *
 * Calls iot_work(i * 4096) CALLS times through iot_outer, then ioctl(FIONREAD)
 * IOCTLS times on a pipe, then exits with EXIT (default 0), crashes (SIGSEGV),
 * or keeps calling iot_work every 10 ms for SECONDS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) unsigned long iot_work(unsigned long size)
{
    sink += size;
    return size / 4096;
}

__attribute__((noinline)) void iot_outer(int calls)
{
    for (int i = 1; i <= calls; i++)
        iot_work((unsigned long)i * 4096);
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 10;
    int ioctls = argc > 2 ? atoi(argv[2]) : 0;
    const char *end = argc > 3 ? argv[3] : "0";
    int fds[2];
    if (pipe(fds))
        return 99;
    iot_outer(calls);
    for (int i = 0; i < ioctls; i++) {
        int n;
        if (ioctl(fds[0], FIONREAD, &n))
            return 98;
    }
    /* Live a little after the calls, as real workloads do: user stacks are
     * symbolized from /proc/PID while the process lives. */
    usleep(300 * 1000);
    if (!strcmp(end, "crash"))
        *(volatile int *)0 = 1;
    if (!strncmp(end, "sleep:", 6)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        double seconds = atof(end + 6);
        for (int i = 0; i < seconds * 100; i++) {
            iot_work(4096);
            nanosleep(&ts, NULL);
        }
        return 0;
    }
    return atoi(end);
}
