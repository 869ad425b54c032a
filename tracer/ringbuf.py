"""Read the BPF ring buffer through mmap, a batch of records at a time, no Python per event.

The kernel lays a BPF_MAP_TYPE_RINGBUF out for user space as libbpf reads it
(kernel/bpf/ringbuf.c): the consumer position on a page of its own (offset 0,
the only writable page), then the producer position's page and the data pages,
mapped twice back to back (offset one page, read-only), so a run of records
that wraps past the end is contiguous in memory. Each record is an 8-byte
header (u32 length with BUSY bit 31 and DISCARD bit 30, u32 page offset) and
the sample, padded to 8 bytes. Every sample here is one `struct event`, so the
records between the consumer and producer positions are an array of one
record type: numpy checks their headers and copies them out in one go, then
the consumer position moves past them and the kernel may reuse the space.

Memory order: the producer position is read before the headers, the headers
before the samples, and the samples are copied before the consumer position is
written. x86-64 keeps loads in order and never moves a store before an earlier
load (TSO), so plain aligned 8-byte loads and stores are the acquire and
release the protocol asks for. Other architectures need barriers that Python
cannot issue: there the recorder reads the ring through BCC's callback
(`supported()`).
"""

from __future__ import annotations

import ctypes as ct
import mmap
import os
import platform
import select

import numpy as np

from ..system.fds import lift

BUSY = 1 << 31  # BPF_RINGBUF_BUSY_BIT: reserved, not yet committed
DISCARD = 1 << 30  # BPF_RINGBUF_DISCARD_BIT: committed as discarded, skip it
HEADER = 8  # BPF_RINGBUF_HDR_SZ
_LENGTH = np.uint32(~(BUSY | DISCARD) & 0xFFFF_FFFF)  # the header's length bits


# After a read that found the ring mostly empty, wait this long before the
# next: at a trickle of events each read would otherwise bring a handful, and a
# read costs tens of microseconds whatever it brings. The ring holds 12 ms of
# events at 2 M/s in 4 MiB, so a gap of 2 ms leaves it three quarters free.
READ_GAP_S = 0.002


class RingError(RuntimeError):
    """The ring holds a record this reader cannot place (one line for the user)."""


def supported() -> bool:
    """Whether this machine's memory order makes plain loads/stores enough (x86-64 only)."""
    return platform.machine() in ("x86_64", "AMD64")


def record_dtype(sample: np.dtype) -> np.dtype:
    """A ring record as numpy sees it: the header's length, then the sample's fields."""
    size = (HEADER + sample.itemsize + 7) & ~7
    fields = sample.fields
    assert fields is not None, "a record type"
    names = ["rb_len", *fields]
    formats = [np.dtype("<u4"), *(fields[n][0] for n in fields)]
    offsets = [0, *(HEADER + fields[n][1] for n in fields)]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


class RingReader:
    """The consumer side of one BPF ring buffer map whose samples are all `sample`."""

    def __init__(self, map_fd: int, data_bytes: int, sample: np.dtype) -> None:
        page = mmap.PAGESIZE
        if data_bytes % page or data_bytes & (data_bytes - 1):
            raise ValueError(f"ring of {data_bytes} bytes: not a power-of-two number of pages")
        self.dtype = record_dtype(sample)
        self._sample = sample.itemsize
        self._mask = data_bytes - 1
        self.capacity = data_bytes // self.dtype.itemsize  # records the ring holds
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._data_map = mmap.mmap(
            map_fd, page + 2 * data_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._cons = ct.c_uint64.from_buffer(self._cons_map)
        data = np.frombuffer(self._data_map, np.uint8)
        self._prod = ct.c_uint64.from_address(data.ctypes.data)
        self._data = data[page:]
        ep = select.epoll()  # lifted, as every descriptor the recording depends on
        self._epoll = select.epoll.fromfd(lift(os.dup(ep.fileno())))
        ep.close()
        self._epoll.register(map_fd, select.EPOLLIN)
        self.wakeups = 0  # epoll returns with data ready (not timeouts)

    def read(self) -> np.ndarray | None:
        """The committed records (a copy, `self.dtype`) the ring holds now; None when none.

        Stops at the first record still being written (BUSY); skips discarded ones.
        """
        cons = self._cons.value
        avail = self._prod.value - cons
        if avail <= 0:
            return None
        size = self.dtype.itemsize
        off = cons & self._mask
        n = avail // size
        recs = self._data[off : off + n * size].view(self.dtype)
        lens = recs["rb_len"]
        busy = np.flatnonzero(lens & BUSY)
        if busy.size:
            n = int(busy[0])
            if not n:
                return None
            lens = lens[:n]
        bad = (lens & _LENGTH) != self._sample
        if bad.any():
            got = int(lens[int(np.argmax(bad))] & _LENGTH)
            raise RingError(f"ring buffer record of {got} bytes, expected {self._sample}")
        out = self._data[off : off + n * size].copy().view(self.dtype)
        self._cons.value = cons + n * size  # release: the copy above is done (TSO)
        discarded = (lens & DISCARD) != 0
        return out[~discarded] if discarded.any() else out

    def wait(self, timeout_s: float) -> None:
        """Until the kernel says records are ready, or timeout_s."""
        if self._epoll.poll(timeout_s):
            self.wakeups += 1

    def close(self) -> None:
        self._epoll.close()
        del self._cons, self._prod, self._data
        self._cons_map.close()
        self._data_map.close()


def ring_bytes(pages: int) -> int:
    return pages * os.sysconf("SC_PAGE_SIZE")
