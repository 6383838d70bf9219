"""The reads behind the throughput fixes: bounded end-record search, lazy str input, and
positions carried across payload pieces."""

from __future__ import annotations

import io
import random
import zipfile

import pytest

from taskloop.blob import encode_zip_to_utf8_blob, verify_blob, zipread
from taskloop.blob import payload as payload_mod
from taskloop.blob.errors import InvalidBase64Error, NotAZipError
from taskloop.blob.files import open_text
from taskloop.blob.source import MemorySource
from taskloop.blob.textin import TextReader


class CountingSource(MemorySource):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read_at(self, offset: int, length: int) -> memoryview:
        view = super().read_at(offset, length)
        self.bytes_read += len(view)
        return view


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_search_all_reads_only_the_tail_of_an_intact_archive() -> None:
    archive = _zip({"big.bin": random.Random(1).randbytes(3 << 20), "a.txt": b"a"})
    src = CountingSource(archive)
    directory = zipread.read_directory(src, search_all=True)
    assert [e.name for e in directory.entries] == ["big.bin", "a.txt"]
    assert src.bytes_read < 2 * zipread.EOCD_SCAN_CHUNK


@pytest.mark.parametrize("shift", range(-4, 5))
def test_end_record_straddling_a_scan_block_is_found(
    monkeypatch: pytest.MonkeyPatch, shift: int
) -> None:
    monkeypatch.setattr(zipread, "EOCD_SCAN_CHUNK", 64)
    archive = _zip({"a.txt": b"hello"})
    eocd = archive.rfind(zipread.EOCD_SIG)
    # Trailing junk after the end record puts its signature across a 64-byte block edge.
    junk = b"j" * (64 * 5 - (len(archive) - eocd) + shift)
    src = MemorySource(archive + junk)
    found = list(zipread._find_eocd(src, search_all=True))
    assert found == [eocd]
    assert [e.name for e in zipread.read_directory(src, search_all=True).entries] == ["a.txt"]


def test_search_all_finds_every_signature_last_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipread, "EOCD_SCAN_CHUNK", 7)
    data = b"xxPK\x05\x06yyyyyyyyPK\x05\x06PK\x05\x06zzzzzzzzzzzzzzzzzzzzzzzz"
    expected = [i for i in range(len(data)) if data.startswith(zipread.EOCD_SIG, i)][::-1]
    assert list(zipread._find_eocd(MemorySource(data), search_all=True)) == expected


def test_no_end_record_is_still_not_a_zip() -> None:
    with pytest.raises(NotAZipError):
        zipread.read_directory(MemorySource(b"PK\x03\x04" + b"\0" * 5000), search_all=True)


def test_ascii_str_is_read_in_pieces_with_the_same_bytes() -> None:
    text = "".join(random.Random(2).choice("ABCD\n") for _ in range(10_000))
    with open_text(text) as (read, name):
        pieces = []
        while piece := read(777):
            assert len(piece) <= 777
            pieces.append(piece)
    assert name == "<memory>"
    assert b"".join(pieces) == text.encode()


def test_str_and_bytes_blobs_verify_alike(small_zip: bytes) -> None:
    text = encode_zip_to_utf8_blob(small_zip)
    assert verify_blob(text).to_dict() == verify_blob(text.encode()).to_dict()


@pytest.mark.parametrize("chunk", [64, 100, 333, 4097])
def test_error_position_after_many_payload_pieces(
    monkeypatch: pytest.MonkeyPatch, small_zip: bytes, chunk: int
) -> None:
    monkeypatch.setattr(payload_mod, "PAYLOAD_CHUNK", chunk)
    text = encode_zip_to_utf8_blob(small_zip)
    lines = text.split("\n")
    target = len(lines) - 4  # a payload line near the end, after many pieces
    lines[target] = lines[target][:10] + "*" + lines[target][11:]
    with pytest.raises(InvalidBase64Error) as info:
        verify_blob("\n".join(lines))
    assert info.value.line == target + 1
    assert info.value.column == 11


def test_payload_pieces_keep_reader_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    for _ in range(200):
        monkeypatch.setattr(payload_mod, "PAYLOAD_CHUNK", rng.choice([1, 3, 10, 50]))
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 400)))
        pieces = list(payload_mod._payload_pieces(TextReader(io.BytesIO(data).read)))
        assert b"".join(p.data for p in pieces) == data
        for p in pieces:
            before = data[: p.offset]
            assert p.line == before.count(b"\n") + 1
            assert p.column == p.offset - (before.rfind(b"\n") + 1) + 1
