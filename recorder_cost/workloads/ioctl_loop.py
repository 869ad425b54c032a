"""CPU-only: ioctl(FIONREAD) on a pipe between bits of arithmetic, for machines without a GPU.

    python3 recorder_cost/workloads/ioctl_loop.py --result r.json --seconds 4

Not one of the measured workloads: it lets the harness be tried where there is
no GPU (the CI VM). Each step is 100 ioctls, each followed by ~10 us of
arithmetic, so the default probes' `ioctl` (a raw syscall tracepoint with a user
stack) fires at roughly the rate a CUDA workload's driver calls would.
Throughput: ioctls per second.
"""

from __future__ import annotations

import timing  # first: the workload's first instruction


def main() -> None:
    import fcntl
    import os
    import termios

    a = timing.parser(__doc__).parse_args()
    r, _w = os.pipe()
    buf = bytearray(4)

    def step() -> int:
        for _ in range(100):
            fcntl.ioctl(r, termios.FIONREAD, buf)
            x = 0
            for i in range(200):
                x += i * i
        return 100

    timing.run(a, step, "ioctl-loop", "ioctls")


if __name__ == "__main__":
    main()
