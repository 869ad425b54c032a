"""The journal: Arrow IPC messages in frames that carry their length and a CRC-32.

While recording, the trace's path holds this journal; a recorder killed with
SIGKILL leaves it. Every frame is checked before its bytes reach Arrow (whose
decoders trust their input: a flipped byte can crash the process), so a torn
or damaged frame ends the readable part and every frame before it is kept.

    file  = MAGIC frame*             frame 0: the schema (and the metadata),
    frame = b"IOTB" <u64 length> <u32 crc32(payload)> payload
                                     then a record batch per frame

A batch's frame is an Arrow IPC stream of its own (`stream`): the schema
without metadata, the batch's dictionaries, the batch, its buffers compressed
with LZ4 (Arrow's own body compression), so it decodes alone and keeps the
low-cardinality strings as dictionaries. At millions of events a second a
plain record batch message was ~175 bytes an event (the zeros of columns the
probe does not fill, every string spelled out) and half the recorder's time;
this is ~6. Journals from before hold one record batch message per frame,
plain strings, uncompressed; they still read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.ipc as ipc

MAGIC = b"IOTJRNL\x01"
FRAME = struct.Struct("<4sQI")
FRAME_MARK = b"IOTB"


# LZ4 is in every pyarrow wheel and Debian's; without it, batches go uncompressed.
# One thread: Arrow's pool would compress the buffers in parallel, competing with
# the traced workload for the CPUs (2.3x slower on the 2-vCPU CI VM under load).
_WRITE = ipc.IpcWriteOptions(
    compression="lz4" if pa.Codec.is_available("lz4") else None, use_threads=False
)


def stream(batch: pa.RecordBatch) -> pa.Buffer:
    """One record batch as a self-contained IPC stream: schema, dictionaries, batch."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema.remove_metadata(), options=_WRITE) as w:
        w.write_batch(batch)
    return sink.getvalue()


def _batches(payload: memoryview, schema: pa.Schema) -> list[pa.RecordBatch]:
    """A frame's batches as the journal's schema: a stream of its own, or (journals from
    before) one record batch message."""
    buf = pa.py_buffer(payload)
    if ipc.read_message(buf).type != "schema":
        return [ipc.read_record_batch(buf, schema)]
    plain = schema.remove_metadata()
    out = []
    for b in ipc.open_stream(buf).read_all().to_batches():
        out.append(b if b.schema.equals(plain) else b.cast(plain))
    return out


def frame(payload: bytes | pa.Buffer) -> bytes:
    data = memoryview(payload)
    return FRAME.pack(FRAME_MARK, data.nbytes, zlib.crc32(data)) + bytes(data)


@dataclass
class Journal:
    schema: pa.Schema
    batches: list[pa.RecordBatch] = field(default_factory=list)
    damage: str | None = None  # "byte N (batch K: why)": where the readable part ends


class JournalError(ValueError):
    pass


def _frames(data: bytes):
    """(offset, payload) of each intact frame; stops at the first bad one, saying why."""
    pos = len(MAGIC)
    while pos < len(data):
        if len(data) - pos < FRAME.size:
            yield pos, None, "a partly written frame header (torn)"
            return
        mark, length, crc = FRAME.unpack_from(data, pos)
        if mark != FRAME_MARK:
            yield pos, None, "no frame marker"
            return
        start = pos + FRAME.size
        if length > len(data) - start:
            yield pos, None, f"a frame of {length} bytes with {len(data) - start} left (torn)"
            return
        payload = memoryview(data)[start : start + length]
        if zlib.crc32(payload) != crc:
            yield pos, None, "a checksum mismatch"
            return
        yield pos, payload, None
        pos = start + length


def read(data: bytes) -> Journal:
    """Every intact batch before the first damaged frame; JournalError if the schema is bad."""
    frames = _frames(data)
    first = next(frames, None)
    if first is None or first[1] is None:
        why = first[2] if first else "no schema frame"
        raise JournalError(f"its header is damaged at byte {first[0] if first else 8} ({why})")
    try:
        schema = ipc.read_schema(pa.py_buffer(first[1]))
    except (pa.ArrowException, ValueError) as e:
        raise JournalError(f"its schema does not decode ({_first_line(e)})") from None
    j = Journal(schema)
    for pos, payload, why in frames:
        if payload is None:
            j.damage = f"byte {pos} (batch {len(j.batches) + 1}: {why})"
            break
        try:
            batches = _batches(payload, schema)
            for batch in batches:
                batch.validate(full=True)
        except (pa.ArrowException, OSError, ValueError) as e:  # a CRC collision, a foreign writer
            j.damage = f"byte {pos} (batch {len(j.batches) + 1} does not decode: {_first_line(e)})"
            break
        j.batches.extend(batches)
    return j


def read_legacy(f) -> Journal:
    """A plain Arrow IPC stream (journals of earlier versions): no checksums to check."""
    try:
        reader = ipc.open_stream(f)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise JournalError(f"it does not decode ({_first_line(e)})") from None
    j = Journal(reader.schema)
    while True:
        pos = f.tell()
        try:
            batch = reader.read_next_batch()
            batch.validate(full=True)
        except StopIteration:
            break
        except (pa.ArrowException, OSError, ValueError) as e:
            j.damage = (
                f"byte {pos} (batch {len(j.batches) + 1} is partly written or damaged: "
                f"{_first_line(e)})"
            )
            break
        j.batches.append(batch)
    return j


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
