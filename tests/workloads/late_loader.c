/* ioctl from the executable, then dlopen(argv[1]) and ioctl from inside it. */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int p[2], n = 0;
    if (argc < 2 || pipe(p))
        return 2;
    ioctl(p[0], FIONREAD, &n); /* the first stack: BCC's cache is made now */
    usleep(200000);            /* let the recorder symbolize it before the dlopen */
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h)
        return fprintf(stderr, "%s\n", dlerror()), 3;
    int (*late)(int) = (int (*)(int))dlsym(h, "late_ioctl");
    for (int i = 0; i < 3; i++)
        late(p[0]);
    usleep(300000); /* stacks are symbolized while the process lives */
    return 0;
}
