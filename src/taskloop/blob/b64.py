"""Streaming base64 with SIMD speed (pybase64) and errors that point at the bad character.

The encoder wraps lines at any width (76, the MIME width, takes a C fast path). The
decoder accepts wrapped or unwrapped text, LF or CRLF, padded or not, standard or
URL-safe alphabet; in strict mode the first character outside the alphabet is reported
with its offset, line and column; in lenient mode (repair) it is replaced so that the
bytes after it keep their place, and lines split by a corrupted character are re-joined.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pybase64

from taskloop.blob.errors import InvalidBase64Error, TruncatedError
from taskloop.blob.textin import Chunk, classify_non_ascii, describe_position, first_non_ascii

STANDARD = "standard"
URLSAFE = "urlsafe"
_ALTCHARS = {STANDARD: b"+/", URLSAFE: b"-_"}
_INVALID = {
    STANDARD: re.compile(rb"[^A-Za-z0-9+/=\r\n\t ]"),
    URLSAFE: re.compile(rb"[^A-Za-z0-9\-_=\r\n\t ]"),
}
_WHITESPACE = b"\r\n\t "
# Outside both alphabets: reported before any diagnosis that assumes base64 text.
_INVALID_ANY = re.compile(rb"[^A-Za-z0-9+/\-_=\r\n\t ]")
_NON_ALPHABET = {
    STANDARD: bytes(b for b in range(256) if not re.match(rb"[A-Za-z0-9+/=]", bytes([b]))),
    URLSAFE: bytes(b for b in range(256) if not re.match(rb"[A-Za-z0-9\-_=]", bytes([b]))),
}
# Lenient decoding replaces every byte outside the alphabet by "A" (six zero bits).
_TO_A = {name: bytes.maketrans(chars, b"A" * len(chars)) for name, chars in _NON_ALPHABET.items()}

MIME_WIDTH = 76
_AFTER_PADDING = re.compile(rb"=[=\r\n\t ]*[A-Za-z0-9+/\-_]")


def encoded_length(n: int) -> int:
    """Characters of padded base64 for ``n`` bytes."""
    return 4 * ((n + 2) // 3)


class Base64Encoder:
    """Encode a byte stream to wrapped base64 lines, chunk by chunk.

    Every whole line encodes exactly ``3 * wrap / 4`` bytes, so the encoder keeps back
    only the bytes of an unfinished line between calls. ``finish`` returns the rest,
    ending in LF.
    """

    def __init__(self, *, wrap: int = MIME_WIDTH, alphabet: str = STANDARD) -> None:
        if wrap < 0 or (wrap and wrap % 4):
            raise ValueError(f"wrap must be 0 or a positive multiple of 4, got {wrap}")
        self.wrap = wrap
        self.altchars = _ALTCHARS[alphabet]
        self.step = 3 * wrap // 4 if wrap else 3  # bytes per whole line (or per quantum)
        self._pending = b""
        self.chars = 0

    def _encode(self, data: bytes | memoryview) -> bytes:
        self.chars += encoded_length(len(data))
        if self.altchars == b"+/":
            return bytes(pybase64.b64encode(data))
        return bytes(pybase64.b64encode(data, altchars=self.altchars))

    def feed(self, data: bytes | memoryview) -> bytes:
        if self._pending:
            data = self._pending + bytes(data)
        usable = len(data) - len(data) % self.step
        self._pending = bytes(data[usable:])
        if not usable:
            return b""
        body = data[:usable]
        if self.wrap == MIME_WIDTH and self.altchars == b"+/":
            # pybase64 writes 76-character MIME lines in C, no slicing in Python.
            self.chars += encoded_length(usable)
            return bytes(pybase64.encodebytes(body))
        text = self._encode(body)
        if not self.wrap:
            return text
        width = self.wrap
        return b"".join(text[i : i + width] + b"\n" for i in range(0, len(text), width))

    def finish(self) -> bytes:
        """The last (partial) line and its LF."""
        text = self._encode(self._pending) if self._pending else b""
        self._pending = b""
        if text:
            return text + b"\n"
        # Whole lines already end in LF; one unwrapped line still needs its LF.
        return b"\n" if self.chars and not self.wrap else b""


def encode_chunk_size(wrap: int) -> int:
    """Bytes per encoder step: a multiple of 3 and, for wrapped output, of a whole line."""
    per_line = 3 * wrap // 4 if wrap else 3
    return per_line * max(1, (1 << 20) // per_line)


@dataclass(slots=True)
class Base64Decoder:
    """Decode base64 text chunk by chunk.

    Args:
        alphabet: "standard", "urlsafe", or "auto" (decided by the first '-', '_', '+' or
            '/' seen; mixing both alphabets is an error).
        lenient: replace characters outside the alphabet instead of failing.
        wrap: the line width the encoder used, if known; lets lenient mode re-join a line
            that a corrupted character split in two.
    """

    alphabet: str = STANDARD
    lenient: bool = False
    wrap: int = 0
    chars: int = 0  # alphabet characters seen, padding included
    problems: list[str] = field(default_factory=list)
    replaced: int = 0
    _carry: bytes = b""  # alphabet characters not yet a multiple of 4
    _padded: bool = False
    _pad_at: tuple[int, int, int] = (0, 1, 1)  # where the padding began (offset, line, column)
    _partial_line: bytes = b""  # lenient: text after the last LF of the previous chunk
    _first_problem: tuple[int, int, int] | None = None

    def feed(self, chunk: Chunk) -> bytes:
        data = chunk.data
        if self.lenient:
            data = self._lenient_clean(chunk)
        else:
            self._check_ascii(chunk)
            data = data.replace(b"\n", b"")
            if b"\r" in data or b" " in data or b"\t" in data:
                data = data.translate(None, _WHITESPACE)
        return self._decode(data, chunk, final=False)

    def finish(self, chunk: Chunk) -> bytes:
        """Decode what is left; ``chunk`` gives the end position for messages."""
        if self.lenient and self._partial_line:
            line, self._partial_line = self._partial_line, b""
            cleaned = self._clean_line(line.rstrip(b"\r"), chunk.offset - len(line))
            return self._decode(cleaned, chunk, final=True)
        return self._decode(b"", chunk, final=True)

    # --- strict -----------------------------------------------------------------------

    def _check_ascii(self, chunk: Chunk) -> None:
        if chunk.data.isascii():
            return
        idx = first_non_ascii(chunk.data)
        line, col = _locate(chunk, idx)
        where = describe_position(line, col)
        window = chunk.data[max(0, idx - 4) : idx + 8]
        found = classify_non_ascii(window, min(idx, 4), chunk.offset + idx, where)
        if isinstance(found, str):
            raise self._invalid(chunk.offset + idx, line, col, found)
        raise found

    def _invalid(self, offset: int, line: int, col: int, char: str) -> InvalidBase64Error:
        hint = None
        if char == "\\":
            hint = (
                "the text has backslash escapes such as '\\n': was it copied out of a JSON "
                "string without unescaping?"
            )
        elif char in "\"'":
            hint = "remove the quotes around the blob"
        else:
            hint = "if the blob was damaged in transit, run `taskloop blob repair`"
        return InvalidBase64Error(
            f"invalid base64 character {char!r} (U+{ord(char):04X}) at offset {offset} "
            f"({describe_position(line, col)})",
            position=offset,
            line=line,
            column=col,
            char=char,
            hint=hint,
        )

    def _find_invalid(self, chunk: Chunk) -> InvalidBase64Error:
        alphabet = self.alphabet if self.alphabet != "auto" else STANDARD
        match = _INVALID[alphabet].search(chunk.data)
        if match is None:  # pragma: no cover - only called after pybase64 refused
            return self._invalid(chunk.offset, chunk.line, chunk.column, "?")
        idx = match.start()
        line, col = _locate(chunk, idx)
        return self._invalid(chunk.offset + idx, line, col, chr(chunk.data[idx]))

    # --- shared -----------------------------------------------------------------------

    def _decode(self, data: bytes, chunk: Chunk, *, final: bool) -> bytes:
        if self.alphabet == "auto" and data:
            self._choose_alphabet(data, chunk)
        if self._padded and data.strip(b"="):
            if self.lenient:
                self.problems.append("base64 text continues after its padding; ignored the rest")
                return b""
            raise self._after_padding(chunk, earlier=True)
        eq = data.find(b"=")
        if eq >= 0:
            if data[eq:].strip(b"="):
                if self.lenient:
                    self.problems.append("base64 padding in the middle of the text; ignored it")
                    data = data.replace(b"=", b"")
                else:
                    raise self._after_padding(chunk)
            else:
                self._padded = True
                idx = chunk.data.find(b"=")
                line, col = _locate(chunk, max(idx, 0))
                self._pad_at = (chunk.offset + max(idx, 0), line, col)
        self.chars += len(data)
        text = self._carry + data if self._carry else data
        usable = len(text) if final or self._padded else len(text) - len(text) % 4
        self._carry = text[usable:]
        if (
            self._carry
            and not self.lenient
            and self._carry.translate(None, self._bad()) != self._carry
        ):
            raise self._find_invalid(chunk)
        body = text[:usable]
        if final or self._padded:
            body = self._finish_padding(body, chunk)
        if not body:
            return b""
        altchars = _ALTCHARS[URLSAFE if self.alphabet == URLSAFE else STANDARD]
        try:
            if altchars == b"+/":
                return bytes(pybase64.b64decode(body, validate=True))
            if b"+" in body or b"/" in body:  # pybase64 accepts them with altchars (deprecated)
                raise binascii.Error("standard-alphabet character in URL-safe text")
            return bytes(pybase64.b64decode(body, altchars=altchars, validate=True))
        except binascii.Error:
            if self.lenient:  # pragma: no cover - lenient input is cleaned first
                raise
            raise self._find_invalid(chunk) from None

    def _finish_padding(self, body: bytes, chunk: Chunk) -> bytes:
        core = body.rstrip(b"=")
        rem = len(core) % 4
        if rem == 1:
            if self.lenient:
                self.problems.append("base64 text ends with a dangling character; dropped it")
                return core[:-1]
            total = self.chars - (len(body) - len(core))  # the whole text, not this quantum
            raise TruncatedError(
                f"base64 text ends with a dangling character at offset {chunk.offset}: "
                f"{total} characters is not a valid length",
                expected=total + 3,
                actual=total,
                unit="characters",
                hint="the text was cut short; `taskloop blob repair` salvages what is there",
            )
        if rem:
            return core + b"=" * (4 - rem)
        return core

    def _bad(self) -> bytes:
        return _NON_ALPHABET[URLSAFE if self.alphabet == URLSAFE else STANDARD]

    def _junk_first(self, chunk: Chunk) -> None:
        """Raise for a character in neither alphabet (a quote, a backslash) if there is one."""
        match = _INVALID_ANY.search(chunk.data)
        if match is not None:
            line, col = _locate(chunk, match.start())
            raise self._invalid(
                chunk.offset + match.start(), line, col, chr(chunk.data[match.start()])
            )

    def _after_padding(self, chunk: Chunk, *, earlier: bool = False) -> InvalidBase64Error:
        """Point at the '=' that text continues after (it may end an earlier chunk)."""
        self._junk_first(chunk)
        match = None if earlier else _AFTER_PADDING.search(chunk.data)
        if match is not None:
            offset = chunk.offset + match.start()
            line, col = _locate(chunk, match.start())
        else:
            offset, line, col = self._pad_at
        return InvalidBase64Error(
            f"base64 text continues after its '=' padding at offset {offset} "
            f"({describe_position(line, col)})",
            position=offset,
            line=line,
            column=col,
            char="=",
            hint="two blobs glued together? decode them one at a time",
        )

    def _choose_alphabet(self, data: bytes, chunk: Chunk) -> None:
        std = re.search(rb"[+/]", data)
        url = re.search(rb"[\-_]", data)
        if std and url:
            if self.lenient:
                self.problems.append("both base64 alphabets are mixed; decoding as standard")
                self.alphabet = STANDARD
                return
            self._junk_first(chunk)
            # Report the first character of whichever alphabet shows up second.
            std_at = re.search(rb"[+/]", chunk.data)
            url_at = re.search(rb"[\-_]", chunk.data)
            assert std_at is not None and url_at is not None
            idx = max(std_at.start(), url_at.start())
            line, col = _locate(chunk, idx)
            raise InvalidBase64Error(
                f"base64 text mixes the standard ('+', '/') and URL-safe ('-', '_') alphabets: "
                f"{chr(chunk.data[idx])!r} at offset {chunk.offset + idx} "
                f"({describe_position(line, col)})",
                position=chunk.offset + idx,
                line=line,
                column=col,
                char=chr(chunk.data[idx]),
            )
        if url:
            self.alphabet = URLSAFE
        elif std:
            self.alphabet = STANDARD

    # --- lenient ----------------------------------------------------------------------

    def _lenient_clean(self, chunk: Chunk) -> bytes:
        """Keep every character in its place: replace what is not base64, re-join lines."""
        data = self._partial_line + chunk.data
        start_offset = chunk.offset - len(self._partial_line)
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial_line = data
            return b""
        self._partial_line = data[cut + 1 :]
        lines = data[: cut + 1].split(b"\n")[:-1]
        w = self.wrap
        if w:
            # Trailing blanks added in transit are not characters that lost their place.
            lines = [ln.rstrip(b"\r\t ") if len(ln) > w else ln for ln in lines]
        if w and all(len(line) == w for line in lines):
            return self._clean_block(b"".join(lines), start_offset)
        out: list[bytes] = []
        offset = start_offset
        i = 0
        while i < len(lines):
            line = lines[i].rstrip(b"\r")
            nxt = lines[i + 1].rstrip(b"\r") if i + 1 < len(lines) else None
            if w and len(line) == 2 * w + 1:
                # A line break became a character: two lines glued by one extra character.
                self._note(offset + w, "a character where a line break belongs")
                out.append(self._clean_line(line[:w] + line[w + 1 :], offset))
                offset += len(lines[i]) + 1
                i += 1
                continue
            if w and nxt is not None and len(line) < w and len(line) + len(nxt) == w - 1:
                # A character became LF: put a placeholder where it was.
                self._note(offset + len(line), "a line break inside a line")
                out.append(self._clean_line(line + b"A" + nxt, offset))
                offset += len(lines[i]) + len(lines[i + 1]) + 2
                i += 2
                continue
            out.append(self._clean_line(line, offset))
            offset += len(lines[i]) + 1
            i += 1
        return b"".join(out)

    def _clean_line(self, line: bytes, offset: int) -> bytes:
        if not self.wrap:
            # Width unknown: whitespace is line wrapping, not damage.
            line = line.translate(None, _WHITESPACE)
        return self._clean_block(line, offset)

    def _clean_block(self, data: bytes, offset: int) -> bytes:
        if self.alphabet == "auto" and data:
            # Choose before cleaning, or every '-' and '_' of URL-safe text becomes 'A'.
            self._choose_alphabet(data, Chunk(data, offset, 0, 0))
        alphabet = self.alphabet if self.alphabet != "auto" else STANDARD
        if data.translate(None, _NON_ALPHABET[alphabet]) == data:
            return data
        cleaned = data.translate(_TO_A[alphabet])
        count = sum(1 for a, b in zip(data, cleaned, strict=True) if a != b)
        first = next(i for i, (a, b) in enumerate(zip(data, cleaned, strict=True)) if a != b)
        self._note(offset + first, f"{count} character(s) outside the base64 alphabet")
        self.replaced += count
        return cleaned

    def _note(self, offset: int, what: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(f"payload: replaced {what} near offset {offset}")


def _locate(chunk: Chunk, idx: int) -> tuple[int, int]:
    """Line and column (1-based) of byte ``idx`` of ``chunk``."""
    before = chunk.data[:idx]
    newlines = before.count(b"\n")
    if newlines:
        return chunk.line + newlines, idx - before.rfind(b"\n")
    return chunk.line, chunk.column + idx


def iter_encoded(chunks: Iterator[bytes | memoryview], encoder: Base64Encoder) -> Iterator[bytes]:
    """Encode an iterator of byte chunks into base64 text pieces."""
    for chunk in chunks:
        text = encoder.feed(chunk)
        if text:
            yield text
    yield encoder.finish()
