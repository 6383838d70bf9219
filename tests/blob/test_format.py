"""The text format: header rendering and parsing, the seal, manifest validation."""

from __future__ import annotations

import hashlib
import json

import pytest

from taskloop.blob import HeaderError, UnsupportedFormatError, encode_zip_to_utf8_blob, inspect_blob
from taskloop.blob.b64 import encoded_length
from taskloop.blob.format import (
    ArchiveInfo,
    BlobHeader,
    HeaderParser,
    ManifestEntry,
    PayloadInfo,
    render_header,
)

ENTRY = ManifestEntry("d/\u00fc.txt", 5, 7, 8, 0x1A2B3C4D, "ab" * 32, critical=True)


def header() -> BlobHeader:
    return BlobHeader(
        payload=PayloadInfo("base64", "standard", 76, 100, 136),
        archive=ArchiveInfo(100, "cd" * 32, 1),
        members=(ENTRY,),
        created_by="test",
    )


def parse(text: bytes, lenient: bool = False) -> BlobHeader | None:
    lines = text.splitlines(keepends=True)
    parser = HeaderParser(lenient=lenient)
    parser.add_magic(lines[0])
    for n, line in enumerate(lines[1:], start=2):
        parser.add(line, n)
        if parser.done:
            break
    return parser.build()


def test_encoded_length_is_four_characters_per_started_triple():
    assert [encoded_length(n) for n in (0, 1, 2, 3, 4, 57)] == [0, 4, 4, 4, 8, 76]


def test_header_lines_are_ascii_and_the_seal_is_sha256_of_the_lines_above():
    text = render_header(header())
    text.decode("ascii")  # raises if not ASCII
    lines = text.split(b"\n")
    assert lines[0] == b"TASKLOOP-BLOB 1"
    assert lines[1].startswith(b'H {"format":"taskloop-blob","version":1,')
    assert lines[2] == (
        b'M {"name":"d/\\u00fc.txt","size":5,"compressed_size":7,"method":8,'
        b'"crc32":"1a2b3c4d","sha256":"' + b"ab" * 32 + b'","critical":true,"dir":false}'
    )
    body = b"\n".join(lines[:3]) + b"\n"
    assert lines[3] == b"C " + hashlib.sha256(body).hexdigest().encode()


def test_parse_round_trips_and_survives_crlf():
    text = render_header(header())
    for variant in (text, text.replace(b"\n", b"\r\n")):
        parsed = parse(variant)
        assert parsed is not None and parsed.seal_ok
        assert parsed.members == (ENTRY,)
        assert parsed.archive == ArchiveInfo(100, "cd" * 32, 1)
        assert parsed.payload.chars == 136


def test_seal_mismatch_is_an_error_strictly_and_a_problem_leniently():
    text = render_header(header()).replace(b'"size":5', b'"size":6')
    with pytest.raises(HeaderError, match="seal mismatch") as info:
        parse(text)
    assert info.value.code == "blob.header"
    parsed = parse(text, lenient=True)
    assert parsed is not None and not parsed.seal_ok
    assert any("seal mismatch" in p for p in parsed.problems)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("crc32", "XYZ", "hex digits"),
        ("sha256", "00", "hex digits"),
        ("size", -1, "non-negative"),
        ("name", 3, "must be a string"),
    ],
)
def test_bad_manifest_fields_name_the_line(field, value, fragment):
    entry = ENTRY.to_json()
    entry[field] = value
    line = b"M " + json.dumps(entry).encode() + b"\n"
    parser = HeaderParser(lenient=False)
    with pytest.raises(HeaderError) as info:
        parser.add(line, 7)
    assert "header line 7 is damaged" in info.value.message
    assert fragment in info.value.message


def test_newer_versions_and_encodings_are_refused_clearly(small_zip):
    text = encode_zip_to_utf8_blob(small_zip)
    with pytest.raises(UnsupportedFormatError, match="version 2"):
        inspect_blob("TASKLOOP-BLOB 2" + text[len("TASKLOOP-BLOB 1") :])
    with pytest.raises(UnsupportedFormatError, match="base32"):
        PayloadInfo.from_json(
            {"encoding": "base32", "alphabet": "standard", "wrap": 0, "size": 1, "chars": 8}
        )


def test_inspect_reads_the_header_without_touching_the_payload(small_zip, small_files):
    text = encode_zip_to_utf8_blob(small_zip)
    # Destroy the payload entirely: inspect must still show header and manifest.
    head = text[: text.index("\nC ") + 1]
    seal_line = text[len(head) : text.index("\n", len(head)) + 1]
    info = inspect_blob(head + seal_line + "!!!! not base64 at all !!!!\n")
    assert info.kind == "taskloop-blob/1"
    assert [m.name for m in info.members] == list(small_files)
    assert next(m for m in info.members if m.name == "manifest.json").critical
    assert info.header is not None and info.header.archive is not None
    assert info.header.archive.size == len(small_zip)


def test_legacy_names_are_reachable_from_the_package_root(small_zip):
    import taskloop
    from taskloop import blob

    assert taskloop.encode_zip_to_utf8_blob is blob.encode_zip_to_utf8_blob
    assert (
        taskloop.decode_utf8_blob_to_zip(taskloop.encode_zip_to_utf8_blob(small_zip)) == small_zip
    )
