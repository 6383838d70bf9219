"""A minimal ZIP writer that copies members' compressed bytes as they are.

Why not ``zipfile``: repair writes salvaged members whose compressed data has already
been verified; ``zipfile`` can only take uncompressed data and would inflate and deflate
every member again. This writer emits a local header, the raw data, and at the end a
central directory (zip64 records where sizes, offsets or counts need them).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from taskloop.blob.members import Writer, crc32
from taskloop.blob.zipread import (
    CENTRAL_HEADER,
    CENTRAL_SIG,
    DEFLATED,
    EOCD,
    EOCD64,
    EOCD64_LOCATOR,
    EOCD64_LOCATOR_SIG,
    EOCD64_SIG,
    EOCD_SIG,
    FLAG_UTF8,
    LOCAL_HEADER,
    LOCAL_SIG,
    MAX_U16,
    MAX_U32,
)

_KEEP_FLAGS = FLAG_UTF8 | 0x0006  # UTF-8 names and the deflate level hint bits


@dataclass(frozen=True, slots=True)
class _Written:
    raw_name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc32: int
    compressed_size: int
    size: int
    offset: int
    create_system: int
    external_attr: int


class RawZipWriter:
    """Write members from already-compressed data; call ``close`` to finish the archive."""

    def __init__(self, out: Writer) -> None:
        self._out = out
        self._pos = 0
        self._entries: list[_Written] = []

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._pos += len(data)

    def add_raw(
        self,
        *,
        raw_name: bytes,
        flags: int,
        method: int,
        dos_time: int,
        dos_date: int,
        crc: int,
        compressed_size: int,
        size: int,
        data: Iterable[bytes | memoryview],
        create_system: int = 3,
        external_attr: int = 0,
    ) -> None:
        """Add a member whose compressed bytes come from ``data`` (exactly compressed_size)."""
        flags &= _KEEP_FLAGS
        zip64 = size >= MAX_U32 or compressed_size >= MAX_U32
        extra = struct.pack("<HHQQ", 1, 16, size, compressed_size) if zip64 else b""
        offset = self._pos
        self._write(
            LOCAL_HEADER.pack(
                LOCAL_SIG,
                45 if zip64 else 20,
                flags,
                method,
                dos_time,
                dos_date,
                crc,
                MAX_U32 if zip64 else compressed_size,
                MAX_U32 if zip64 else size,
                len(raw_name),
                len(extra),
            )
        )
        self._write(raw_name)
        self._write(extra)
        written = 0
        for piece in data:
            self._write(piece)
            written += len(piece)
        if written != compressed_size:
            raise ValueError(
                f"member {raw_name!r}: wrote {written} bytes, expected {compressed_size}"
            )
        self._entries.append(
            _Written(
                raw_name,
                flags,
                method,
                dos_time,
                dos_date,
                crc,
                compressed_size,
                size,
                offset,
                create_system,
                external_attr,
            )
        )

    def add_bytes(
        self,
        raw_name: bytes,
        content: bytes,
        *,
        flags: int = FLAG_UTF8,
        dos_time: int = 0,
        dos_date: int = (1980 - 1980) << 9 | 1 << 5 | 1,
    ) -> None:
        """Add a member from uncompressed bytes (deflated)."""
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = comp.compress(content) + comp.flush()
        self.add_raw(
            raw_name=raw_name,
            flags=flags,
            method=DEFLATED,
            dos_time=dos_time,
            dos_date=dos_date,
            crc=crc32(content),
            compressed_size=len(data),
            size=len(content),
            data=[data],
            external_attr=(0o100644 << 16),
        )

    def close(self) -> None:
        cd_start = self._pos
        for e in self._entries:
            fields = {"size": e.size, "csize": e.compressed_size, "offset": e.offset}
            big = [k for k in ("size", "csize", "offset") if fields[k] >= MAX_U32]
            extra = (
                struct.pack("<HH", 1, 8 * len(big))
                + b"".join(struct.pack("<Q", fields[k]) for k in big)
                if big
                else b""
            )
            self._write(
                CENTRAL_HEADER.pack(
                    CENTRAL_SIG,
                    45 if big else 20,
                    e.create_system,
                    45 if big else 20,
                    e.flags,
                    e.method,
                    e.dos_time,
                    e.dos_date,
                    e.crc32,
                    MAX_U32 if "csize" in big else e.compressed_size,
                    MAX_U32 if "size" in big else e.size,
                    len(e.raw_name),
                    len(extra),
                    0,
                    0,
                    0,
                    e.external_attr,
                    MAX_U32 if "offset" in big else e.offset,
                )
            )
            self._write(e.raw_name)
            self._write(extra)
        cd_size = self._pos - cd_start
        count = len(self._entries)
        if count >= MAX_U16 or cd_start >= MAX_U32 or cd_size >= MAX_U32:
            eocd64_pos = self._pos
            self._write(
                EOCD64.pack(
                    EOCD64_SIG, EOCD64.size - 12, 45, 45, 0, 0, count, count, cd_size, cd_start
                )
            )
            self._write(EOCD64_LOCATOR.pack(EOCD64_LOCATOR_SIG, 0, eocd64_pos, 1))
            self._write(
                EOCD.pack(
                    EOCD_SIG,
                    0,
                    0,
                    min(count, MAX_U16),
                    min(count, MAX_U16),
                    min(cd_size, MAX_U32),
                    min(cd_start, MAX_U32),
                    0,
                )
            )
        else:
            self._write(EOCD.pack(EOCD_SIG, 0, 0, count, count, cd_size, cd_start, 0))
