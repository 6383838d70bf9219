"""Reading blob text: byte-order marks, wrong encodings, mojibake, and a positioned reader.

The checks here turn "this is not what a blob looks like" into a message that says what
the text is instead (UTF-16, latin-1, a mangled BOM, a JSON-escaped string, a raw ZIP)
and where the first offending byte sits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from taskloop.blob.errors import BlobInputError, MojibakeError, NotUtf8Error, WideEncodingError

UTF8_BOM = b"\xef\xbb\xbf"
# The UTF-8 BOM decoded as cp1252/latin-1 and encoded again as UTF-8 ("ï»¿").
MOJIBAKE_BOM = "\u00ef\u00bb\u00bf".encode()
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32-LE"),
    (b"\x00\x00\xfe\xff", "UTF-32-BE"),
    (b"\xff\xfe", "UTF-16-LE"),
    (b"\xfe\xff", "UTF-16-BE"),
)
# UTF-8 read as cp1252 and written back: Ã followed by a continuation-range character,
# or â€ (the prefix of mangled curly quotes and dashes).
_MOJIBAKE = re.compile("[\u00c2\u00c3][\u0080-\u00bf\u0152-\u0178\u2018-\u203a]|\u00e2\u20ac")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


@dataclass(frozen=True, slots=True)
class Opening:
    """What the first bytes say about the input."""

    skip: int  # bytes to skip (a UTF-8 BOM)
    kind: str  # "text" or "zip"
    note: str | None = None  # a repaired oddity, for the report


def sniff(head: bytes, *, lenient: bool) -> Opening:
    """Classify the input from its first bytes.

    Raises:
        WideEncodingError: UTF-16 or UTF-32 (BOM or interleaved NULs).
        MojibakeError: a UTF-8 BOM mangled into "ï»¿" (strict mode; lenient skips it).
    """
    if head.startswith(ZIP_SIGNATURES):
        return Opening(0, "zip")
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            raise WideEncodingError(
                f"input is {name} text (byte-order mark {bom.hex(' ')} at offset 0); "
                "a blob must be UTF-8",
                encoding=name,
                hint=f"convert it first, e.g. `iconv -f {name} -t UTF-8 IN > OUT`",
            )
    wide = _guess_wide(head)
    if wide is not None:
        raise WideEncodingError(
            f"input looks like {wide} text without a byte-order mark (NUL bytes between "
            "the characters of its first line); a blob must be UTF-8",
            encoding=wide,
            hint=f"convert it first, e.g. `iconv -f {wide} -t UTF-8 IN > OUT`",
        )
    if head.startswith(UTF8_BOM):
        return Opening(len(UTF8_BOM), "text")
    if head.startswith(MOJIBAKE_BOM):
        if lenient:
            return Opening(len(MOJIBAKE_BOM), "text", "skipped a mangled byte-order mark 'ï»¿'")
        raise MojibakeError(
            "input starts with 'ï»¿': a UTF-8 byte-order mark that was read as cp1252/latin-1 "
            "and saved again as UTF-8 (mojibake)",
            offset=0,
            hint="remove the first 6 bytes, or run `taskloop blob repair`, which skips them",
        )
    return Opening(0, "text")


def _guess_wide(head: bytes) -> str | None:
    sample = head[:64]
    if len(sample) < 8 or b"\x00" not in sample:
        return None
    n = len(sample) - len(sample) % 4
    quads = [sample[i : i + 4] for i in range(0, n, 4)]
    if all(q[1:] == b"\x00\x00\x00" and q[0] for q in quads):
        return "UTF-32-LE"
    if all(q[:3] == b"\x00\x00\x00" and q[3] for q in quads):
        return "UTF-32-BE"
    even, odd = sample[0:n:2], sample[1:n:2]
    if odd.count(0) == len(odd) and even.count(0) == 0:
        return "UTF-16-LE"
    if even.count(0) == len(even) and odd.count(0) == 0:
        return "UTF-16-BE"
    return None


def first_non_ascii(chunk: bytes | memoryview) -> int:
    """Index of the first byte >= 0x80, or -1."""
    match = _HIGH_BYTE.search(chunk)
    return match.start() if match else -1


def classify_non_ascii(window: bytes, index: int, offset: int, where: str) -> BlobInputError | str:
    """Explain a non-ASCII byte found where a blob has only ASCII.

    Args:
        window: bytes around the offending byte (a few before, a few after).
        index: its index in ``window``.
        offset: its absolute byte offset in the input.
        where: location for the message ("line 5, column 7").

    Returns:
        ``NotUtf8Error`` for bytes that are not UTF-8 (latin-1/cp1252 text or a flipped
        bit), ``MojibakeError`` for re-encoded UTF-8, else the (valid, non-ASCII)
        character itself, for the caller's own "invalid character" error.
    """
    start = index
    # Back up to the start of a UTF-8 sequence if we landed on a continuation byte.
    while start > 0 and 0x80 <= window[start] < 0xC0 and index - start < 3:
        start -= 1
    try:
        text = window[start:].decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        if start + exc.start <= index:
            bad = window[index]
            return NotUtf8Error(
                f"input is not UTF-8: byte 0x{bad:02X} at offset {offset} ({where}) cannot "
                "start or continue a UTF-8 character; the text looks like latin-1/cp1252, "
                "or a bit was flipped",
                offset=offset,
                hint="re-save it as UTF-8 (`iconv -f cp1252 -t UTF-8`), or run "
                "`taskloop blob repair` if it was damaged in transit",
            )
        text = window[start : start + exc.start].decode("utf-8")
    match = _MOJIBAKE.search(text)
    if match is not None and match.start() <= 2:
        return MojibakeError(
            f"input has {match.group()!r} at offset {offset} ({where}): UTF-8 text that was "
            "read as cp1252/latin-1 and saved again (mojibake)",
            offset=offset,
            hint="re-export the blob from its source without converting its encoding",
        )
    return text[:1]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of input and where it starts."""

    data: bytes
    offset: int
    line: int
    column: int


class TextReader:
    """Sequential reader over the blob's bytes that knows its byte offset and line."""

    def __init__(self, read: Callable[[int], bytes], *, start: int = 0) -> None:
        self._read = read
        self._buf = b""
        self.offset = start  # absolute offset of the next unread byte
        self.line = 1  # line number of the next unread byte
        self.column = 1

    def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            more = self._read(max(n - len(self._buf), 1 << 16))
            if not more:
                return
            self._buf += more

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[:n]

    def _advance(self, data: bytes) -> None:
        self.offset += len(data)
        newlines = data.count(b"\n")
        if newlines:
            self.line += newlines
            self.column = len(data) - data.rfind(b"\n")
        else:
            self.column += len(data)

    def skip(self, n: int) -> None:
        self._fill(n)
        data, self._buf = self._buf[:n], self._buf[n:]
        self._advance(data)

    def readline(self, limit: int) -> bytes:
        """The next line including its LF (none at the end of input); at most ``limit`` bytes."""
        while True:
            idx = self._buf.find(b"\n")
            if idx >= 0 or len(self._buf) >= limit:
                break
            before = len(self._buf)
            self._fill(before + (1 << 16))
            if len(self._buf) == before:
                break
        end = idx + 1 if idx >= 0 else len(self._buf)
        end = min(end, limit)
        data, self._buf = self._buf[:end], self._buf[end:]
        self._advance(data)
        return data

    def chunks(self, size: int) -> Iterator[Chunk]:
        """The rest of the input in pieces of about ``size`` bytes."""
        if self._buf:
            data, self._buf = self._buf, b""
        else:
            data = self._read(size)
        while data:
            chunk = Chunk(data, self.offset, self.line, self.column)
            self._advance(data)
            yield chunk
            data = self._read(size)


def describe_position(line: int, column: int) -> str:
    return f"line {line}, column {column}"
