"""Reading blob text into archive bytes: header, manifest, payload, end line.

``read_payload`` is the one reader behind decode, verify, repair and extract. It accepts
a taskloop blob, bare base64 (wrapped or not, padded or not, URL-safe), a ``data:`` URL,
a leading BOM, CRLF line ends, or a raw ZIP, and writes the archive bytes to a sink while
hashing them on a second thread.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from taskloop.blob.b64 import Base64Decoder
from taskloop.blob.crypto import (
    NO_KEYS,
    ChunkDecryptor,
    Keys,
    Sealing,
    open_manifest,
    open_sealing,
)
from taskloop.blob.errors import EmptyInputError, HeaderError, TruncatedError
from taskloop.blob.format import (
    END_LINE,
    MAGIC,
    MAX_HEADER_LINE,
    BlobHeader,
    HeaderParser,
    ManifestEntry,
    parse_sealed_manifest,
)
from taskloop.blob.members import Writer
from taskloop.blob.textin import Chunk, Opening, TextReader, sniff

PAYLOAD_CHUNK = 1 << 20  # small steps stay in cache and keep peak memory low
_END_SEARCH = b"\n" + END_LINE


@dataclass(slots=True)
class Payload:
    """What reading a blob's text produced (the archive bytes went to a sink)."""

    kind: str  # "taskloop-blob/1", "base64", "data-url", "zip"
    header: BlobHeader | None
    size: int = 0
    sha256: str = ""
    problems: list[str] = field(default_factory=list)
    encrypted: bool = False

    @property
    def manifest(self) -> tuple[ManifestEntry, ...] | None:
        return self.header.members if self.header is not None and self.header.archive else None

    @property
    def manifest_trusted(self) -> bool:
        return self.header is not None and self.header.seal_ok and self.header.archive is not None

    @property
    def hash_matches(self) -> bool:
        archive = self.header.archive if self.header else None
        return archive is not None and archive.sha256 == self.sha256 and archive.size == self.size


def as_keys(key: bytes | Keys | None) -> Keys:
    if key is None:
        return NO_KEYS
    if isinstance(key, Keys):
        return key
    if len(key) != 32:
        raise ValueError(f"a symmetric key has 32 bytes, got {len(key)}")
    return Keys(symmetric=(bytes(key),))


def _payload_pieces(reader: TextReader) -> Iterator[Chunk]:
    """The rest of the text in chunks that end at a line end (or inside a very long line).

    Line-aligned pieces let the END line be found with one search per piece.
    """
    carry = b""
    carry_at = (0, 1, 1)
    for chunk in reader.chunks(PAYLOAD_CHUNK):
        data = carry + chunk.data if carry else chunk.data
        offset, line, col = carry_at if carry else (chunk.offset, chunk.line, chunk.column)
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > 4096:
            cut = len(data)  # one long line: no END marker can start inside it
        if cut == 0:
            carry, carry_at = data, (offset, line, col)
            continue
        piece, carry = data[:cut], data[cut:]
        if carry:
            # The carry is this chunk's tail after its last LF, and the reader stands just
            # past it: its position comes without counting the piece's newlines again.
            carry_at = (reader.offset - len(carry), reader.line, reader.column - len(carry))
        yield Chunk(piece, offset, line, col)
    if carry:
        yield Chunk(carry, *carry_at)


class _HashSink:
    """Hashes and forwards decoded bytes on a second thread, overlapping base64 decoding."""

    def __init__(self, sink: Writer) -> None:
        self._sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="taskloop-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is None:
                try:
                    self.hasher.update(data)
                    self._sink.write(data)
                except BaseException as exc:
                    self._error = exc

    def write(self, data: bytes) -> None:
        if data:
            self.size += len(data)
            self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def read_payload(
    read: Callable[[int], bytes],
    sink: Writer,
    *,
    keys: Keys = NO_KEYS,
    lenient: bool = False,
) -> Payload:
    """Read blob text from ``read`` and write the archive bytes it carries to ``sink``.

    Accepts a taskloop blob, bare base64 (wrapped or not, padded or not, URL-safe), a
    ``data:`` URL, a leading BOM, CRLF line ends, or a raw ZIP (copied through).

    Raises:
        BlobInputError subclasses for text that is not a blob (strict mode), and
        CryptoError subclasses for key problems.
    """
    reader, opening = start_reading(read, lenient=lenient)
    if opening.kind == "zip":
        return _copy_raw(reader, sink)
    problems = [opening.note] if opening.note else []
    header: BlobHeader | None = None
    sealing: Sealing | None = None
    if at_magic(reader):
        kind = "taskloop-blob/1"
        header = read_header(reader, lenient)
        if header is None:
            problems.append("header unreadable; decoding the payload as bare base64")
        else:
            problems.extend(header.problems)
            if header.encryption is not None:
                header, sealing = unseal(header, keys)
    elif reader.peek(5).lower() == b"data:":
        kind = "data-url"
        _read_data_url_prefix(reader)
    else:
        kind = "base64"
    decoder = Base64Decoder(
        alphabet=header.payload.alphabet if header else "auto",
        lenient=lenient,
        wrap=header.payload.wrap if header else 0,
    )
    decryptor = ChunkDecryptor(sealing, lenient=lenient) if sealing is not None else None
    out = _HashSink(sink)
    end_found = False
    try:
        for piece in _payload_pieces(reader):
            data = piece.data
            if header is not None and not end_found:
                idx = 0 if data.startswith(END_LINE) else data.find(_END_SEARCH) + 1
                if idx > 0 or data.startswith(END_LINE):
                    end_found = True
                    _check_after_end(data[idx:], piece, idx, lenient, problems)
                    data = data[:idx]
                    piece = Chunk(data, piece.offset, piece.line, piece.column)
            elif end_found:
                _check_after_end(data, piece, 0, lenient, problems, continued=True)
                continue
            if data:
                plain = decoder.feed(piece)
                out.write(decryptor.feed(plain) if decryptor else plain)
        _check_complete(header, decoder, end_found, lenient, problems)
        tail = decoder.finish(Chunk(b"", reader.offset, reader.line, reader.column))
        plain = decryptor.feed(tail) if decryptor else tail
        out.write(plain)
        if decryptor is not None:
            out.write(decryptor.finish())
            problems.extend(decryptor.problems)
    finally:
        out.close()
    problems.extend(decoder.problems)
    return Payload(
        kind=kind,
        header=header,
        size=out.size,
        sha256=out.hasher.hexdigest(),
        problems=problems,
        encrypted=sealing is not None,
    )


def start_reading(read: Callable[[int], bytes], *, lenient: bool) -> tuple[TextReader, Opening]:
    """A reader past any BOM and leading blank space, and what the first bytes showed.

    Raises:
        EmptyInputError, WideEncodingError, MojibakeError (strict): see ``textin.sniff``.
    """
    reader = TextReader(read)
    head = reader.peek(64)
    if not head.strip():
        raise EmptyInputError("input is empty" if not head else "input holds only whitespace")
    opening = sniff(head, lenient=lenient)
    if opening.kind == "text":
        reader.skip(opening.skip)
        while reader.peek(1) in (b"\n", b"\r", b" ", b"\t"):
            reader.skip(1)
    return reader, opening


def at_magic(reader: TextReader) -> bool:
    """Whether the reader stands at a taskloop blob's magic line."""
    return reader.peek(len(MAGIC) + 1) == MAGIC + b" "


def unseal(header: BlobHeader, keys: Keys) -> tuple[BlobHeader, Sealing]:
    """Open an encrypted header's sealed manifest: the header with archive and members."""
    assert header.encryption is not None
    sealing = open_sealing(header.encryption, keys)
    archive, members = parse_sealed_manifest(open_manifest(sealing, header.encryption.sealed))
    return replace(header, archive=archive, members=members), sealing


def _copy_raw(reader: TextReader, sink: Writer) -> Payload:
    hasher, size = hashlib.sha256(), 0
    for chunk in reader.chunks(PAYLOAD_CHUNK):
        hasher.update(chunk.data)
        sink.write(chunk.data)
        size += len(chunk.data)
    return Payload(kind="zip", header=None, size=size, sha256=hasher.hexdigest())


def read_header(reader: TextReader, lenient: bool) -> BlobHeader | None:
    parser = HeaderParser(lenient=lenient)
    parser.add_magic(reader.readline(MAX_HEADER_LINE))
    while not parser.done:
        lineno = reader.line
        nxt = reader.peek(2)
        if not nxt:
            if lenient:
                parser.problems.append("blob ends inside its header")
                break
            raise TruncatedError(
                f"blob ends inside its header (after line {lineno - 1})",
                expected=1,
                actual=0,
                unit="seal line",
                hint="the blob was cut short; nothing of the archive is left in it",
            )
        if lenient and nxt not in (b"H ", b"M ", b"C ") and _looks_like_payload(reader):
            parser.problems.append("header has no seal line; payload starts early")
            break
        line = reader.readline(MAX_HEADER_LINE)
        if not line.endswith(b"\n") and len(line) >= MAX_HEADER_LINE:
            raise HeaderError(f"header line {lineno} is longer than {MAX_HEADER_LINE} bytes")
        parser.add(line, lineno)
    return parser.build()


def _looks_like_payload(reader: TextReader) -> bool:
    sample = reader.peek(80).split(b"\n", 1)[0].rstrip(b"\r")
    return (
        bool(sample)
        and sample.translate(
            None, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
        )
        == b""
    )


def _read_data_url_prefix(reader: TextReader) -> None:
    prefix = reader.peek(512)
    comma = prefix.find(b",")
    if comma < 0:
        raise HeaderError("data: URL has no ',' within its first 512 bytes")
    meta = prefix[5:comma].decode("ascii", "replace").lower()
    if not meta.endswith(";base64"):
        raise HeaderError(
            f"data: URL 'data:{meta},...' is not base64-encoded (';base64' missing)",
            hint="only base64 data URLs carry binary archives",
        )
    reader.skip(comma + 1)


def _check_after_end(
    rest: bytes, piece: Chunk, idx: int, lenient: bool, problems: list[str], continued: bool = False
) -> None:
    if not continued:
        line_end = rest.find(b"\n")
        end_line = rest[: line_end if line_end >= 0 else len(rest)].rstrip(b"\r")
        if end_line != END_LINE:
            _after_end_problem(f"end line is {end_line[:40]!r}", piece, idx, lenient, problems)
        rest = rest[line_end + 1 :] if line_end >= 0 else b""
    if rest.strip():
        _after_end_problem("text after the end line", piece, idx, lenient, problems)


def _after_end_problem(
    what: str, piece: Chunk, idx: int, lenient: bool, problems: list[str]
) -> None:
    message = f"{what} near offset {piece.offset + idx}"
    if not lenient:
        raise HeaderError(message, hint="was something appended to the blob?")
    problems.append(message + "; ignored")


def _check_complete(
    header: BlobHeader | None,
    decoder: Base64Decoder,
    end_found: bool,
    lenient: bool,
    problems: list[str],
) -> None:
    if header is None:
        return
    expected = header.payload.chars
    if decoder.chars < expected or not end_found:
        message = (
            f"blob is truncated: the payload has {decoder.chars} of {expected} base64 "
            f"characters (about {max(0, expected - decoder.chars) * 3 // 4} bytes missing)"
            + ("" if end_found else " and no end line")
        )
        if decoder.chars >= expected:
            message = "blob has no end line ('END TASKLOOP-BLOB'): it may be cut short"
        if not lenient:
            raise TruncatedError(
                message,
                expected=expected,
                actual=decoder.chars,
                unit="characters",
                hint="`taskloop blob repair` salvages the members that arrived whole",
            )
        problems.append(message)
    elif decoder.chars > expected:
        message = f"payload has {decoder.chars} base64 characters, the header says {expected}"
        if not lenient:
            raise HeaderError(message, hint="was text inserted into the blob?")
        problems.append(message)
