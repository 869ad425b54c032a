/* A library loaded after the process's first traced event: late_ioctl() ends in
 * ioctl(FIONREAD), so its frame is in a mapping BCC's first symbol cache lacks.
 * Two levels: libc's ioctl keeps no frame, so the frame-pointer walk skips its
 * direct caller (late_inner) and finds late_ioctl. */
#include <sys/ioctl.h>

__attribute__((noinline)) int late_inner(int fd)
{
    int n = 0;
    int r = ioctl(fd, FIONREAD, &n);
    __asm__ volatile("" ::: "memory"); /* keep the frame: no tail call */
    return r;
}

__attribute__((noinline)) int late_ioctl(int fd)
{
    int r = late_inner(fd);
    __asm__ volatile("" ::: "memory");
    return r;
}
