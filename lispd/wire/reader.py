"""A bounds-checked cursor over a byte buffer, the base of every decoder."""

from __future__ import annotations

import struct

from lispd.wire.errors import TRUNCATED, WireError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Reader:
    """Reads big-endian fields from ``data[start:end]``; any read past ``end`` raises
    ``WireError("truncated")``.  ``end`` lets a caller fence a nested structure (an LCAF body,
    an inner packet) so that a lying length field cannot make it read its neighbour's bytes.
    """

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.data = bytes(data) if isinstance(data, memoryview) else data
        self.pos = start
        self.end = len(self.data) if end is None else min(end, len(self.data))

    @property
    def remaining(self) -> int:
        """Bytes left before the fence."""
        return self.end - self.pos

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise WireError(
                TRUNCATED, f"{what}: need {n} bytes at offset {pos}, have {self.end - pos}"
            )
        self.pos = pos + n
        return pos

    def u8(self, what: str = "u8") -> int:
        """One byte."""
        return self.data[self._need(1, what)]

    def u16(self, what: str = "u16") -> int:
        """A 16-bit big-endian integer."""
        value: int = _U16.unpack_from(self.data, self._need(2, what))[0]
        return value

    def u32(self, what: str = "u32") -> int:
        """A 32-bit big-endian integer."""
        value: int = _U32.unpack_from(self.data, self._need(4, what))[0]
        return value

    def u64(self, what: str = "u64") -> int:
        """A 64-bit big-endian integer."""
        value: int = _U64.unpack_from(self.data, self._need(8, what))[0]
        return value

    def take(self, n: int, what: str = "bytes") -> bytes:
        """The next ``n`` bytes."""
        pos = self._need(n, what)
        return self.data[pos : pos + n]

    def rest(self) -> bytes:
        """Everything up to the fence."""
        out = self.data[self.pos : self.end]
        self.pos = self.end
        return out

    def sub(self, n: int, what: str = "nested") -> Reader:
        """A reader fenced to the next ``n`` bytes; this reader skips past them."""
        pos = self._need(n, what)
        return Reader(self.data, pos, pos + n)
