"""Every input error path: class, ``code``, ``exit_status`` and the facts it carries.

Offsets are hand-computed from the blob's layout. The archive below has three members,
so the header is 1 magic line + 1 H line + 3 M lines + 1 seal line = 6 lines and the
payload starts on line 7; payload lines are 76 characters + LF = 77 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import zipfile
import zlib
from collections.abc import Callable

import pytest

from taskloop.blob import (
    BlobError,
    ChecksumMismatchError,
    EmptyInputError,
    HeaderError,
    InvalidBase64Error,
    KeyRequiredError,
    MojibakeError,
    NotAZipError,
    NotUtf8Error,
    PathTraversalError,
    TamperedError,
    TruncatedError,
    UnsupportedFormatError,
    WideEncodingError,
    WrongKeyError,
    decode_utf8_blob_to_zip,
    encode_zip_to_utf8_blob,
    inspect_blob,
    key_id,
    repair_blob,
    verify_blob,
)
from taskloop.errors import ExitStatus

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
FILES = {
    "manifest.json": b'{"name": "errors"}',
    "data/qa.jsonl": b'{"question": "q", "answer": "a"}\n' * 30,
    "data/random.bin": random.Random(7).randbytes(2600),
}
PAYLOAD_LINE = 7  # see the module docstring


def _build_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in FILES.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
            info.compress_type = (
                zipfile.ZIP_STORED if name.endswith(".bin") else zipfile.ZIP_DEFLATED
            )
            zf.writestr(info, data)
    return buf.getvalue()


ARCHIVE = _build_zip()
BLOB = encode_zip_to_utf8_blob(ARCHIVE)
ENCRYPTED = encode_zip_to_utf8_blob(ARCHIVE, key=KEY, chunk_size=1024)


def payload_start(blob: str) -> int:
    """Offset of the first payload character: just after the seal line's LF."""
    return blob.index("\n", blob.index("\nC ") + 1) + 1


def _decode_str(blob: str | bytes) -> object:
    return decode_utf8_blob_to_zip(blob.decode("utf-8") if isinstance(blob, bytes) else blob)


def _decode_bytes(blob: str | bytes) -> object:
    return decode_utf8_blob_to_zip(blob.encode("utf-8") if isinstance(blob, str) else blob)


def _verify(blob: str | bytes) -> object:
    return verify_blob(blob)


def _inspect(blob: str | bytes) -> object:
    return inspect_blob(blob)


ENTRY_POINTS = {
    "decode-str": _decode_str,
    "decode-bytes": _decode_bytes,
    "verify": _verify,
}
ALL_ENTRY_POINTS = {**ENTRY_POINTS, "inspect": _inspect}


def replace_payload(blob: str, change: Callable[[bytes], bytes]) -> str:
    """Decode the payload, change its bytes, encode them again at 76 columns."""
    start = payload_start(blob)
    end = blob.rindex("END TASKLOOP-BLOB")
    data = base64.b64decode(blob[start:end])
    return blob[:start] + base64.encodebytes(change(data)).decode("ascii") + blob[end:]


def reseal(blob: str, edit: Callable[[list[str]], None]) -> str:
    """Edit the header lines (without LF, seal line excluded) and write a correct seal:
    ``C`` + SHA-256 of the lines above it, each ending in LF."""
    start = payload_start(blob)
    lines = blob[:start].split("\n")[:-2]  # drop the seal line and the empty tail
    edit(lines)
    body = "".join(line + "\n" for line in lines)
    seal = hashlib.sha256(body.encode("ascii")).hexdigest()
    return body + f"C {seal}\n" + blob[start:]


def edit_h(change: Callable[[dict[str, object]], None]) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        obj = json.loads(lines[1][2:])
        change(obj)
        lines[1] = "H " + json.dumps(obj, separators=(",", ":"))

    return edit


def test_layout_assumed_by_the_offsets() -> None:
    """The hand computations rely on: 6 header lines, 76-column payload lines."""
    lines = BLOB.split("\n")
    assert lines[0] == "TASKLOOP-BLOB 1"
    assert [line[:2] for line in lines[1:6]] == ["H ", "M ", "M ", "M ", "C "]
    assert all(len(line) == 76 for line in lines[6:9])
    assert BLOB.count("\n", 0, payload_start(BLOB)) == PAYLOAD_LINE - 1


# --- text encoding ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["decode-bytes", "verify"])
def test_latin1_byte_in_payload_is_not_utf8(entry: str) -> None:
    """Byte 0xE9 (latin-1 'é') in place of payload line 2, column 4: offset
    payload_start + 77 + 3, line 8."""
    offset = payload_start(BLOB) + 77 + 3
    data = bytearray(BLOB.encode("ascii"))
    data[offset] = 0xE9
    with pytest.raises(NotUtf8Error) as caught:
        ENTRY_POINTS[entry](bytes(data))
    exc = caught.value
    assert exc.code == "blob.not_utf8"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert exc.offset == offset
    assert f"byte 0xE9 at offset {offset} (line {PAYLOAD_LINE + 1}, column 4)" in exc.message


def test_lone_surrogate_in_str_is_not_utf8() -> None:
    """A str holding a lone surrogate cannot be UTF-8: offset is its character index."""
    offset = payload_start(BLOB) + 10
    text = BLOB[:offset] + "\udce9" + BLOB[offset + 1 :]
    with pytest.raises(NotUtf8Error) as caught:
        decode_utf8_blob_to_zip(text)
    assert caught.value.code == "blob.not_utf8"
    assert caught.value.offset == offset
    assert f"at character {offset}" in caught.value.message


def test_not_utf8_in_the_header() -> None:
    """0xFF in place of the 'T' of "TASKLOOP" (offset 0) is no UTF-8 lead byte:
    NotUtf8Error at offset 0. Inside the JSON of an M line (line 3) the header reader
    reports the damaged line instead."""
    data = bytearray(BLOB.encode("ascii"))
    data[0] = 0xFF
    with pytest.raises(NotUtf8Error) as caught:
        decode_utf8_blob_to_zip(bytes(data))
    assert caught.value.offset == 0
    data = bytearray(BLOB.encode("ascii"))
    data[BLOB.index('"name":"manifest.json"') + 9] = 0xE9
    with pytest.raises(HeaderError) as caught_header:
        decode_utf8_blob_to_zip(bytes(data))
    assert caught_header.value.message.startswith("header line 3 is damaged")


WIDE = [
    ("utf-16", True, "UTF-16-LE"),  # Python writes a little-endian BOM ff fe
    ("utf-16-le", False, "UTF-16-LE"),
    ("utf-16-be", False, "UTF-16-BE"),
    ("utf-16-be", True, "UTF-16-BE"),
    ("utf-32", True, "UTF-32-LE"),  # BOM ff fe 00 00
    ("utf-32-le", False, "UTF-32-LE"),
    ("utf-32-be", False, "UTF-32-BE"),
    ("utf-32-be", True, "UTF-32-BE"),
]


@pytest.mark.parametrize(("codec", "bom", "name"), WIDE)
@pytest.mark.parametrize("entry", ["decode-bytes", "verify", "inspect"])
def test_wide_encodings(codec: str, bom: bool, name: str, entry: str) -> None:
    text = BLOB
    if bom and codec.endswith(("-le", "-be")):
        text = "\ufeff" + text
    data = text.encode(codec)
    with pytest.raises(WideEncodingError) as caught:
        ALL_ENTRY_POINTS[entry](data)
    exc = caught.value
    assert exc.code == "blob.wide_encoding"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert exc.encoding == name
    assert f"input {'is' if bom else 'looks like'} {name} text" in exc.message
    assert ("byte-order mark" in exc.message) and (("without" in exc.message) != bom)
    assert exc.hint is not None and f"iconv -f {name} -t UTF-8" in exc.hint


def test_wide_encoding_of_bare_base64() -> None:
    """Bare base64 in UTF-16-LE without BOM: NULs between the characters."""
    data = base64.b64encode(ARCHIVE).decode("ascii").encode("utf-16-le")
    with pytest.raises(WideEncodingError) as caught:
        decode_utf8_blob_to_zip(data)
    assert caught.value.encoding == "UTF-16-LE"


@pytest.mark.parametrize("entry", list(ALL_ENTRY_POINTS))
def test_mojibake_bom_at_the_start(entry: str) -> None:
    """The UTF-8 BOM EF BB BF read as cp1252 is 'ï»¿', saved again as UTF-8 it is
    C3 AF C2 BB C2 BF: offset 0."""
    text = "\u00ef\u00bb\u00bf" + BLOB
    assert text.encode("utf-8")[:6] == b"\xc3\xaf\xc2\xbb\xc2\xbf"
    with pytest.raises(MojibakeError) as caught:
        ALL_ENTRY_POINTS[entry](text)
    exc = caught.value
    assert exc.code == "blob.mojibake"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert exc.offset == 0
    assert "ï»¿" in exc.message
    assert exc.hint is not None and "first 6 bytes" in exc.hint


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_mojibake_inside_the_payload(entry: str) -> None:
    """'Ã©' ('é' mangled) replacing payload characters 51-52 of line 1: byte offset
    payload_start + 50, line 7, column 51."""
    offset = payload_start(BLOB) + 50
    text = BLOB[:offset] + "\u00c3\u00a9" + BLOB[offset + 2 :]
    with pytest.raises(MojibakeError) as caught:
        ENTRY_POINTS[entry](text)
    exc = caught.value
    assert exc.code == "blob.mojibake"
    assert exc.offset == offset
    assert f"'Ã©' at offset {offset} (line {PAYLOAD_LINE}, column 51)" in exc.message


# --- base64 -----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_invalid_base64_character(entry: str) -> None:
    """'!' in place of payload line 3, column 6: offset payload_start + 2 * 77 + 5,
    line 7 + 2 = 9, column 6."""
    offset = payload_start(BLOB) + 2 * 77 + 5
    text = BLOB[:offset] + "!" + BLOB[offset + 1 :]
    with pytest.raises(InvalidBase64Error) as caught:
        ENTRY_POINTS[entry](text)
    exc = caught.value
    assert exc.code == "blob.invalid_base64"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert (exc.position, exc.line, exc.column, exc.char) == (offset, PAYLOAD_LINE + 2, 6, "!")
    assert f"'!' (U+0021) at offset {offset} (line {PAYLOAD_LINE + 2}, column 6)" in exc.message


def test_json_escaped_newline_gets_the_backslash_hint() -> None:
    """The payload's line breaks written as the two characters '\\' 'n' (a blob copied
    out of a JSON string): the first backslash is where payload line 1 ended, offset
    payload_start + 76, line 7, column 77."""
    start = payload_start(BLOB)
    end = BLOB.rindex("END TASKLOOP-BLOB")
    text = BLOB[:start] + BLOB[start:end].replace("\n", "\\n") + BLOB[end:]
    with pytest.raises(InvalidBase64Error) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert (exc.position, exc.line, exc.column, exc.char) == (start + 76, PAYLOAD_LINE, 77, "\\")
    assert exc.hint is not None and "JSON string" in exc.hint


def test_whole_blob_json_escaped_gets_the_backslash_hint() -> None:
    """``json.dumps(blob)`` without its quotes: one line "TASKLOOP-BLOB 1\\nH {..." whose
    first line is not a magic line; the hint names the escapes."""
    text = json.dumps(BLOB)[1:-1]
    with pytest.raises(HeaderError) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert exc.code == "blob.header"
    assert "is not 'TASKLOOP-BLOB <version>'" in exc.message
    assert exc.hint is not None and "JSON string" in exc.hint


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(BLOB),  # a JSON string, quotes and all
        '"' + BLOB + '"',
        "'" + BLOB + "'",
        '"' + base64.b64encode(ARCHIVE).decode("ascii") + '"',
    ],
)
def test_quotes_get_the_quote_hint(text: str) -> None:
    """The opening quote is offset 0, line 1, column 1: it is reported as such (before
    any diagnosis of alphabets or padding that the rest of the text would trigger)."""
    with pytest.raises(InvalidBase64Error) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert (exc.position, exc.line, exc.column, exc.char) == (0, 1, 1, text[0])
    assert exc.hint == "remove the quotes around the blob"


# --- truncation -------------------------------------------------------------------------


def test_truncated_blob_counts_characters() -> None:
    """Cut 100 bytes into the payload: 76 characters, LF, 23 characters = 99 of the
    4 * ceil(size / 3) characters the header announces."""
    expected = 4 * -(-len(ARCHIVE) // 3)
    text = BLOB[: payload_start(BLOB) + 100]
    for entry in ENTRY_POINTS.values():
        with pytest.raises(TruncatedError) as caught:
            entry(text)
        exc = caught.value
        assert exc.code == "blob.truncated"
        assert exc.exit_status == ExitStatus.CORRUPT
        assert (exc.expected, exc.actual, exc.unit) == (expected, 99, "characters")
        assert f"the payload has 99 of {expected} base64 characters" in exc.message
        assert f"about {(expected - 99) * 3 // 4} bytes missing" in exc.message


def test_missing_end_line_is_truncation() -> None:
    """Every character there, but no 'END TASKLOOP-BLOB': expected == actual."""
    expected = 4 * -(-len(ARCHIVE) // 3)
    text = BLOB.replace("END TASKLOOP-BLOB\n", "")
    with pytest.raises(TruncatedError) as caught:
        decode_utf8_blob_to_zip(text)
    assert (caught.value.expected, caught.value.actual) == (expected, expected)
    assert "no end line" in caught.value.message


def test_cut_inside_the_header() -> None:
    """Cut after the M lines, before the seal: the header is incomplete."""
    text = BLOB[: BLOB.index("\nC ") + 1]
    with pytest.raises(TruncatedError) as caught:
        decode_utf8_blob_to_zip(text)
    assert caught.value.code == "blob.truncated"
    assert (caught.value.expected, caught.value.actual, caught.value.unit) == (1, 0, "seal line")


def test_bare_base64_with_a_dangling_character() -> None:
    """Bare base64 of the archive cut to 4k + 1 characters (no header to compare with):
    the dangling character is truncation, counted over the whole text."""
    text = base64.b64encode(ARCHIVE).decode("ascii")[:401]
    with pytest.raises(TruncatedError) as caught:
        decode_utf8_blob_to_zip(text)
    assert (caught.value.expected, caught.value.actual) == (404, 401)


# --- checksums and the archive ----------------------------------------------------------


def _member_data_offset(name: str) -> int:
    """Local header offset + 30 + name length + extra length."""
    with zipfile.ZipFile(io.BytesIO(ARCHIVE)) as zf:
        header = zf.getinfo(name).header_offset
    name_len = int.from_bytes(ARCHIVE[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(ARCHIVE[header + 28 : header + 30], "little")
    return header + 30 + name_len + extra_len


def _flip(pos: int, mask: int = 0x10) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[pos] ^= mask
        return bytes(out)

    return change


@pytest.mark.parametrize("entry", ["decode-str", "decode-bytes"])
def test_checksum_mismatch_names_the_damaged_member(entry: str) -> None:
    """A bit of the stored member ``data/random.bin`` flipped (header intact): the
    manifest's SHA-256 of it is the expected value, the damaged bytes' the actual."""
    pos = _member_data_offset("data/random.bin") + 100
    damaged_member = bytearray(FILES["data/random.bin"])
    damaged_member[100] ^= 0x10
    text = replace_payload(BLOB, _flip(pos))
    with pytest.raises(ChecksumMismatchError) as caught:
        ENTRY_POINTS[entry](text)
    exc = caught.value
    assert exc.code == "blob.checksum"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert exc.member == "data/random.bin"
    assert exc.kind == "sha256"
    assert exc.expected == hashlib.sha256(FILES["data/random.bin"]).hexdigest()
    assert exc.actual == hashlib.sha256(damaged_member).hexdigest()
    assert "'data/random.bin'" in exc.message
    crc_expected = f"{zlib.crc32(FILES['data/random.bin']):08x}"
    crc_actual = f"{zlib.crc32(bytes(damaged_member)):08x}"
    assert f"CRC-32 is {crc_actual}, expected {crc_expected}" in exc.message


def test_checksum_mismatch_of_a_deflated_member() -> None:
    """The deflate stream of ``data/qa.jsonl`` damaged: it is named, with the manifest's
    SHA-256 as expected."""
    text = replace_payload(BLOB, _flip(_member_data_offset("data/qa.jsonl") + 5))
    with pytest.raises(ChecksumMismatchError) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert exc.member == "data/qa.jsonl"
    assert exc.expected == hashlib.sha256(FILES["data/qa.jsonl"]).hexdigest()
    assert exc.actual != exc.expected


def test_checksum_mismatch_in_bare_base64_uses_the_zip_crc() -> None:
    """Without a manifest the ZIP's own CRC-32 is the reference."""
    pos = _member_data_offset("data/random.bin") + 100
    damaged_member = bytearray(FILES["data/random.bin"])
    damaged_member[100] ^= 0x10
    text = base64.b64encode(_flip(pos)(ARCHIVE)).decode("ascii")
    with pytest.raises(ChecksumMismatchError) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert exc.member == "data/random.bin"
    assert exc.kind == "crc32"
    assert exc.expected == f"{zlib.crc32(FILES['data/random.bin']):08x}"
    assert exc.actual == f"{zlib.crc32(bytes(damaged_member)):08x}"


def test_whole_archive_mismatch_has_no_member() -> None:
    """Bit 0 of the first central directory entry's modification time (offset
    cd_offset + 12) flipped: no member's data changed, so every member verifies and the
    mismatch is the archive's: expected = SHA-256 of the original, actual = of the damaged
    archive."""
    eocd = ARCHIVE.rindex(b"PK\x05\x06")
    cd_offset = int.from_bytes(ARCHIVE[eocd + 16 : eocd + 20], "little")
    damaged = _flip(cd_offset + 12, 0x01)(ARCHIVE)
    text = replace_payload(BLOB, lambda _data: damaged)
    with pytest.raises(ChecksumMismatchError) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert exc.member is None
    assert exc.kind == "sha256"
    assert exc.expected == hashlib.sha256(ARCHIVE).hexdigest()
    assert exc.actual == hashlib.sha256(damaged).hexdigest()
    assert "whole archive" in exc.message
    report = verify_blob(text)
    assert report.outcome.value == "damaged"
    assert all(m.status.value == "intact" for m in report.members)


@pytest.mark.parametrize(
    "data",
    [b"hello world, this is not a zip archive", b"PK\x03\x04 truncated local header"],
)
def test_not_a_zip(data: bytes) -> None:
    """Base64 of bytes with no end-of-central-directory record: decode raises; verify
    reports it (damage is reported, not raised) with no members."""
    text = base64.b64encode(data).decode("ascii")
    for entry in (_decode_str, _decode_bytes):
        with pytest.raises(NotAZipError) as caught:
            entry(text)
        assert caught.value.code == "blob.not_zip"
        assert caught.value.exit_status == ExitStatus.CORRUPT
        assert "end-of-central-directory" in caught.value.message
    report = verify_blob(text)
    assert report.outcome.value == "damaged"
    assert report.members == []
    assert any("not a ZIP archive" in p for p in report.problems)


def test_repair_of_something_that_is_not_a_zip_fails() -> None:
    """repair_blob promises DamagedArchiveError when nothing could be recovered; for
    text that holds no ZIP at all it returns an empty archive with outcome "repaired"."""
    text = base64.b64encode(b"hello world, this is not a zip archive").decode("ascii")
    with pytest.raises(BlobError):
        repair_blob(text)


def test_unsafe_member_name_is_exit_status_5() -> None:
    """A member named '../evil.txt' (bare base64, no manifest) climbs out of the target."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    text = base64.b64encode(buf.getvalue()).decode("ascii")
    with pytest.raises(PathTraversalError) as caught:
        decode_utf8_blob_to_zip(text)
    exc = caught.value
    assert exc.code == "blob.unsafe.path"
    assert exc.exit_status == ExitStatus.UNSAFE == 5
    assert exc.member == "../evil.txt"


# --- the header -------------------------------------------------------------------------


def test_header_seal_mismatch() -> None:
    """The size of ``manifest.json`` in its M line (line 3) changed from 18 to 19: the
    seal no longer matches; expected is the written seal, computed the new SHA-256."""
    old = '"name":"manifest.json","size":18,'
    assert old in BLOB
    text = BLOB.replace(old, '"name":"manifest.json","size":19,', 1)
    written = BLOB.split("\n")[5][2:]
    computed = hashlib.sha256(text[: text.index("\nC ") + 1].encode("ascii")).hexdigest()
    for entry in ALL_ENTRY_POINTS.values():
        with pytest.raises(HeaderError) as caught:
            entry(text)
        exc = caught.value
        assert exc.code == "blob.header"
        assert exc.exit_status == ExitStatus.CORRUPT
        assert f"expected {written}, computed {computed}" in exc.message


def test_damaged_header_line() -> None:
    """Line 4 (the M line of ``data/qa.jsonl``) made invalid JSON and the seal written
    again to match: the line itself is reported, by number."""

    def edit(lines: list[str]) -> None:
        lines[3] = lines[3].replace("{", "[", 1)

    text = reseal(BLOB, edit)
    for entry in ALL_ENTRY_POINTS.values():
        with pytest.raises(HeaderError) as caught:
            entry(text)
        assert caught.value.code == "blob.header"
        assert caught.value.message.startswith("header line 4 is damaged")


def test_text_after_the_end_line() -> None:
    """Something appended after 'END TASKLOOP-BLOB' is refused in strict mode."""
    with pytest.raises(HeaderError) as caught:
        decode_utf8_blob_to_zip(BLOB + "more text\n")
    assert "text after the end line" in caught.value.message
    assert caught.value.hint is not None and "appended" in caught.value.hint


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (None, "blob format version 2 is newer than this taskloop reads (version 1)"),
        (
            edit_h(lambda h: h["payload"].update(alphabet="base32")),
            "base64 alphabet 'base32' is not supported",
        ),
        (
            edit_h(lambda h: h["payload"].update(encoding="hex")),
            "payload encoding 'hex' is not supported",
        ),
    ],
)
def test_unsupported_format(edit: Callable[[list[str]], None] | None, message: str) -> None:
    """A newer magic line, or a correctly sealed header asking for what this build lacks."""
    if edit is None:
        text = BLOB.replace("TASKLOOP-BLOB 1", "TASKLOOP-BLOB 2", 1)
    else:
        text = reseal(BLOB, edit)
    for entry in ALL_ENTRY_POINTS.values():
        with pytest.raises(UnsupportedFormatError) as caught:
            entry(text)
        assert caught.value.code == "blob.unsupported"
        assert caught.value.exit_status == ExitStatus.CORRUPT
        assert message in caught.value.message


def test_unsupported_encryption_scheme() -> None:
    text = reseal(ENCRYPTED, edit_h(lambda h: h["encryption"].update(scheme="rot13")))
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_utf8_blob_to_zip(text, key=KEY)
    assert "encryption scheme 'rot13' is not supported" in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "input is empty"),
        (b"", "input is empty"),
        ("   \n\t\r\n", "input holds only whitespace"),
        (b"\n\n\n", "input holds only whitespace"),
    ],
)
def test_empty_input(text: str | bytes, message: str) -> None:
    for entry in (decode_utf8_blob_to_zip, verify_blob):
        with pytest.raises(EmptyInputError) as caught:
            entry(text)
        assert caught.value.code == "blob.empty"
        assert caught.value.exit_status == ExitStatus.CORRUPT
        assert caught.value.message == message
    with pytest.raises(EmptyInputError):
        inspect_blob(text)


# --- encryption -------------------------------------------------------------------------


def test_encrypted_without_key() -> None:
    """KeyRequiredError names the recipient key id; inspect still shows the header."""
    kid = key_id(KEY)
    for entry in (decode_utf8_blob_to_zip, verify_blob):
        with pytest.raises(KeyRequiredError) as caught:
            entry(ENCRYPTED)
        exc = caught.value
        assert exc.code == "blob.key_required"
        assert exc.exit_status == ExitStatus.CRYPTO == 6
        assert f"encrypted (for key:{kid})" in exc.message
    info = inspect_blob(ENCRYPTED)
    assert info.manifest_readable is False
    assert info.members == ()


def test_wrong_key_names_the_key_ids() -> None:
    """The blob's recipient id and the given key's id are both in the message."""
    expected_id, given_id = key_id(KEY), key_id(OTHER_KEY)
    assert expected_id != given_id
    for entry in (decode_utf8_blob_to_zip, verify_blob, inspect_blob):
        with pytest.raises(WrongKeyError) as caught:
            entry(ENCRYPTED, key=OTHER_KEY)
        exc = caught.value
        assert exc.code == "blob.wrong_key"
        assert exc.exit_status == ExitStatus.CRYPTO
        assert f"encrypted for key:{expected_id}" in exc.message
        assert f"have id(s) {given_id}" in exc.message


def test_tampered_ciphertext_names_the_chunk() -> None:
    """Chunks of 1024 bytes seal to 1024 + 16 = 1040 bytes: ciphertext byte 1040 + 7 is
    in chunk 1, which spans payload bytes 1040-2080."""
    assert len(ARCHIVE) > 2 * 1024  # at least three chunks
    text = replace_payload(ENCRYPTED, _flip(1040 + 7, 0x01))
    for entry in (decode_utf8_blob_to_zip, verify_blob):
        with pytest.raises(TamperedError) as caught:
            entry(text, key=KEY)
        exc = caught.value
        assert exc.code == "blob.tampered"
        assert exc.exit_status == ExitStatus.CRYPTO
        assert exc.chunks == (1,)
        assert "encrypted chunk 1 (payload bytes 1040-2080)" in exc.message


def test_tampered_sealed_manifest() -> None:
    """The sealed manifest's first byte changed (header resealed): authentication fails."""

    def change(h: dict[str, object]) -> None:
        enc = h["encryption"]
        assert isinstance(enc, dict)
        sealed = bytearray(base64.b64decode(enc["sealed"]))
        sealed[0] ^= 0x01
        enc["sealed"] = base64.b64encode(bytes(sealed)).decode("ascii")

    text = reseal(ENCRYPTED, edit_h(change))
    with pytest.raises(TamperedError) as caught:
        decode_utf8_blob_to_zip(text, key=KEY)
    assert caught.value.chunks == ()
    assert "sealed manifest fails authentication" in caught.value.message


def test_encrypted_blob_cut_at_a_chunk_boundary() -> None:
    """Only the first two sealed chunks (2 * 1040 = 2080 bytes) kept, the header made to
    agree (size 2080, 4 * ceil(2080 / 3) = 2776 characters) and resealed: both chunks
    authenticate, but chunk 1 is not marked last, so the stream was cut -- 2 chunks
    arrived of at least 3."""

    def set_size(h: dict[str, object]) -> None:
        payload = h["payload"]
        assert isinstance(payload, dict)
        payload.update(size=2080, chars=2776)

    text = replace_payload(reseal(ENCRYPTED, edit_h(set_size)), lambda data: data[:2080])
    with pytest.raises(TruncatedError) as caught:
        decode_utf8_blob_to_zip(text, key=KEY)
    exc = caught.value
    assert exc.code == "blob.truncated"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert (exc.expected, exc.actual, exc.unit) == (3, 2, "chunks")
    assert "chunk 1 is not marked as the last one (2048 bytes decrypted)" in exc.message


def test_exit_status_groups() -> None:
    """Input and archive errors are 4, unsafe archives 5, key problems 6."""
    assert ExitStatus.CORRUPT == 4 and ExitStatus.UNSAFE == 5 and ExitStatus.CRYPTO == 6
    for cls in (NotUtf8Error, InvalidBase64Error, TruncatedError, HeaderError, NotAZipError):
        assert cls.exit_status == ExitStatus.CORRUPT
    assert PathTraversalError.exit_status == ExitStatus.UNSAFE
    for cls in (KeyRequiredError, WrongKeyError, TamperedError):
        assert cls.exit_status == ExitStatus.CRYPTO
