"""Random-access byte sources: an in-memory buffer or a file read with ``pread``.

Everything that reads an archive goes through :class:`ByteSource`, so the same code
verifies a ``bytes`` object (zero-copy slices) and a multi-gigabyte file (bounded
memory: nothing is mapped, every read is an explicit ``pread`` of at most a chunk).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class ByteSource(Protocol):
    """Read-only random access to a byte sequence of known size."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes | memoryview:
        """Return up to ``length`` bytes at ``offset``; shorter only at the end."""
        ...


class MemorySource:
    """A source over bytes in memory; reads are zero-copy memoryview slices."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")

    @property
    def size(self) -> int:
        return len(self._view)

    def read_at(self, offset: int, length: int) -> memoryview:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        return self._view[offset : offset + length]


class FileSource:
    """A source over a file, read with ``os.pread`` so threads can share one descriptor."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        length = max(0, min(length, self._size - offset))
        parts: list[bytes] = []
        while length > 0:
            chunk = os.pread(self._fd, length, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
