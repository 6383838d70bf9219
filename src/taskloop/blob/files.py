"""Files and buffers: reading inputs, writing outputs atomically, collecting bytes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from taskloop.blob.errors import NotUtf8Error
from taskloop.blob.source import ByteSource, FileSource, MemorySource
from taskloop.errors import InputFileError

BlobInput = str | bytes | bytearray | memoryview


@contextmanager
def open_source(path: str | Path) -> Iterator[FileSource]:
    try:
        src = FileSource(path)
    except OSError as exc:
        raise InputFileError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with src:
        yield src


@contextmanager
def open_text(blob: BlobInput | Path) -> Iterator[tuple[Callable[[int], bytes], str]]:
    """A read function over the blob, and a name for messages."""
    if isinstance(blob, Path):
        try:
            fh = blob.open("rb")
        except OSError as exc:
            raise InputFileError(f"cannot read {str(blob)!r}: {exc.strerror}") from None
        with fh:
            yield fh.read, str(blob)
        return
    if isinstance(blob, str) and blob.isascii():
        # Every blob is ASCII: encode a read at a time, never a copy of the whole text.
        text = blob
        at = 0

        def read_ascii(n: int) -> bytes:
            nonlocal at
            piece = text[at : at + n].encode("ascii")
            at += len(piece)
            return piece

        yield read_ascii, "<memory>"
        return
    if isinstance(blob, str):
        try:
            data = blob.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotUtf8Error(
                f"input string cannot be UTF-8: {blob[exc.start]!r} at character {exc.start} "
                "is a lone surrogate",
                offset=exc.start,
            ) from None
    else:
        data = bytes(blob)
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = bytes(view[pos : pos + n])
        pos += len(piece)
        return piece

    yield read, "<memory>"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path whose file is renamed to ``path`` when the block ends without error."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise InputFileError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_output(path: str | Path) -> Iterator[IO[bytes]]:
    """A file that appears at ``path`` only when the block finishes without error."""
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        yield fh


class Collect:
    """An in-memory sink that joins its pieces once."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes | memoryview) -> None:
        self.parts.append(bytes(data))

    def getvalue(self) -> bytes:
        data = b"".join(self.parts)
        self.parts = [data]
        return data


class Scratch:
    """Bytes written once, then read back: in memory, or in ``path`` for file inputs."""

    def __init__(self, path: Path | None) -> None:
        self._collect = Collect() if path is None else None
        self._path = path
        self._fh = path.open("wb") if path is not None else None
        self._src: FileSource | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self._fh is not None:
            self._fh.write(data)
        else:
            assert self._collect is not None
            self._collect.write(data)

    def source(self) -> ByteSource:
        if self._collect is not None:
            return MemorySource(self._collect.getvalue())
        assert self._fh is not None and self._path is not None
        self._fh.close()
        self._src = FileSource(self._path)
        return self._src

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._src is not None:
            self._src.close()
