"""The protobuf wire format, read in pure Python and bounded.

Every length is checked against the buffer, varints are at most 10 bytes; nothing is
imported, evaluated or run. Neither TensorFlow nor the ``protobuf`` package is needed.
"""

from __future__ import annotations

from collections.abc import Iterator

#: Larger than any dnn_superres graph (EDSR x4 is about 38 MB); refuses huge files early.
MAX_BYTES = 256 * 1024 * 1024


class GraphError(Exception):
    """Internal: the graph is not what the matcher expects (becomes a WeightsError)."""


def varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if i >= len(buf):
            raise GraphError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    raise GraphError("varint longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message.

    Varints come back as ints, the other wire types as views of their bytes.
    """
    i, n = 0, len(buf)
    while i < n:
        tag, i = varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise GraphError("field number 0")
        if wire == 0:
            value, i = varint(buf, i)
            yield number, wire, value
            continue
        if wire == 2:
            size, i = varint(buf, i)
        elif wire == 1:
            size = 8
        elif wire == 5:
            size = 4
        else:  # 3/4 (groups) never occur in a GraphDef; 6/7 do not exist
            raise GraphError(f"unsupported wire type {wire}")
        if i + size > n:
            raise GraphError("truncated field")
        yield number, wire, buf[i : i + size]
        i += size


def as_bytes(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise GraphError("expected a length-delimited field")
    return value


def as_int(value: int | memoryview) -> int:
    if not isinstance(value, int):
        raise GraphError("expected a varint field")
    return value


def signed(value: int) -> int:
    """A varint read as a two's complement int64 (how protobuf writes negative ints)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def text(value: int | memoryview) -> str:
    try:
        return bytes(as_bytes(value)).decode("utf-8")
    except UnicodeDecodeError:
        raise GraphError("a name is not UTF-8") from None
