"""ZIP variants the reader must take (zip64, data descriptors, bzip2, junk, comments) or
refuse precisely (lzma, ZIP encryption, inconsistent headers), and the raw ZIP writer."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from taskloop.blob import (
    MemberStatus,
    Outcome,
    UnsupportedMethodError,
    ZipStructureError,
    decode_utf8_blob_to_zip,
    encode_zip_to_utf8_blob,
    extract_blob,
    repair_blob,
    verify_blob,
)
from taskloop.blob.files import Collect
from taskloop.blob.source import MemorySource
from taskloop.blob.zipread import read_directory
from taskloop.blob.zipwrite import RawZipWriter
from taskloop.errors import ExitStatus
from tests.blob import zipcraft as zc
from tests.conftest import read_zip

FILES = {
    "a.txt": b"alpha " * 400,
    "b.bin": bytes(range(256)) * 4,
    "c/empty.txt": b"",
    "c/d.txt": b"delta\n" * 50,
}


def zlib_crc(data: bytes) -> int:
    return zlib.crc32(data)


def zlib_inflater() -> zlib._Decompress:
    return zlib.decompressobj(-15)


def b64(archive: bytes) -> str:
    return base64.b64encode(archive).decode("ascii")


def statuses(report: object) -> dict[str, MemberStatus]:
    return {m.name: m.status for m in report.members}  # type: ignore[attr-defined]


def assert_round_trip(archive: bytes, files: dict[str, bytes]) -> None:
    """Encode, decode (blob and bare base64), verify: exact bytes back, every member intact."""
    blob = encode_zip_to_utf8_blob(archive)
    assert decode_utf8_blob_to_zip(blob) == archive
    assert decode_utf8_blob_to_zip(b64(archive)) == archive
    for text in (blob, b64(archive)):
        report = verify_blob(text)
        assert report.outcome == Outcome.INTACT, report.summary()
        assert statuses(report) == dict.fromkeys(files, MemberStatus.INTACT)
        assert {m.name: m.actual_size for m in report.members} == {
            name: len(data) for name, data in files.items()
        }
    assert read_zip(archive) == files


# --- zip64 ------------------------------------------------------------------------------


def test_zip64_local_headers_written_by_zipfile_round_trip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name, data in FILES.items():
            with zf.open(name, "w", force_zip64=True) as fh:
                fh.write(data)
    archive = buf.getvalue()
    # The first local header has 0xFFFFFFFF sizes and a zip64 extra block (tag 1, 16 bytes).
    assert archive[18:26] == b"\xff" * 8
    assert archive[30 + len("a.txt") : 30 + len("a.txt") + 4] == b"\x01\x00\x10\x00"
    assert_round_trip(archive, FILES)


def test_zip64_central_extras_and_end_records_written_by_zipfile_round_trip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # With tiny limits zipfile writes zip64 extras for every size and offset over 10
    # bytes and zip64 end records for more than one entry.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 10)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    archive = buf.getvalue()
    monkeypatch.undo()
    assert zc.EOCD64_SIG in archive and zc.EOCD64_LOCATOR_SIG in archive
    directory = read_directory(MemorySource(archive))
    assert directory.zip64
    assert [(e.name, e.zip64, e.size) for e in directory.entries] == [
        ("a.txt", True, 2400),
        ("b.bin", True, 1024),
        ("c/empty.txt", True, 0),  # its offset is over 10
        ("c/d.txt", True, 300),
    ]
    assert_round_trip(archive, FILES)
    extract_blob(b64(archive), tmp_path / "out")
    assert (tmp_path / "out" / "c" / "d.txt").read_bytes() == FILES["c/d.txt"]


def test_zip64_records_built_by_hand_round_trip() -> None:
    entries = [
        zc.Entry("a.txt", FILES["a.txt"], zc.DEFLATED, zip64=True),
        zc.Entry("b.bin", FILES["b.bin"], zc.STORED, zip64=True),
        zc.Entry("c/empty.txt", b"", zip64=True),
        zc.Entry("c/d.txt", FILES["c/d.txt"], zc.DEFLATED, zip64=True, descriptor="sig"),
    ]
    archive = zc.build(entries, zip64_end=True)
    directory = read_directory(MemorySource(archive))
    assert directory.zip64
    assert all(e.zip64 for e in directory.entries)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        offsets = [i.header_offset for i in zf.infolist()]
    assert [e.header_offset for e in directory.entries] == offsets
    assert [(e.size, e.compressed_size) for e in directory.entries] == [
        (len(e.data), len(e.payload)) for e in entries
    ]
    assert_round_trip(archive, FILES)


def test_central_entry_with_0xffffffff_size_and_no_zip64_extra_is_a_structure_error() -> None:
    archive = zc.build([zc.Entry("a.txt", b"x", size=zc.U32)])
    with pytest.raises(ZipStructureError) as info:
        encode_zip_to_utf8_blob(archive)
    exc = info.value
    assert exc.code == "blob.zip_structure"
    assert exc.exit_status == ExitStatus.CORRUPT
    assert "entry 0 (b'a.txt') needs a zip64 extra field for its sizes but has none" in exc.message


# --- data descriptors -------------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors (with their signature)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return len(view)


def streamed_zip(files: dict[str, bytes]) -> bytes:
    out = _Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return bytes(out.data)


def test_descriptors_with_signature_written_by_zipfile_verify_intact() -> None:
    archive = streamed_zip(FILES)
    assert archive.count(zc.DESCRIPTOR_SIG) == len(FILES)
    assert all(e.flags & zc.FLAG_DESCRIPTOR for e in read_directory(MemorySource(archive)).entries)
    assert_round_trip(archive, FILES)


DESCRIPTOR_ENTRIES = [
    zc.Entry("deflate-sig.txt", b"one " * 200, zc.DEFLATED, descriptor="sig"),
    zc.Entry("deflate-nosig.txt", b"two " * 200, zc.DEFLATED, descriptor="nosig"),
    zc.Entry("stored-sig.txt", b"three " * 20, zc.STORED, descriptor="sig"),
    zc.Entry("stored-nosig.txt", b"four " * 20, zc.STORED, descriptor="nosig"),
    zc.Entry("zip64-nosig.txt", b"five " * 100, zc.DEFLATED, descriptor="nosig", zip64=True),
    zc.Entry("zip64-sig.txt", b"six " * 100, zc.DEFLATED, descriptor="sig", zip64=True),
]
DESCRIPTOR_FILES = {e.name: e.data for e in DESCRIPTOR_ENTRIES}


def test_descriptors_without_signature_verify_intact() -> None:
    archive = zc.build(DESCRIPTOR_ENTRIES)
    # Local headers hold zeros (or 0xFFFFFFFF and a zip64 block of zeros) for CRC and sizes.
    assert archive[14:26] == bytes(12)
    assert_round_trip(archive, DESCRIPTOR_FILES)


@pytest.mark.parametrize("keep", [0, 4, 30], ids=["cut-at-directory", "cut-4-in", "cut-30-in"])
def test_descriptor_members_are_salvaged_when_the_directory_is_cut_off(keep: int) -> None:
    archive = zc.build(DESCRIPTOR_ENTRIES)
    truncated = archive[: zc.central_directory_offset(archive) + keep]
    rebuilt, report = repair_blob(b64(truncated))
    assert report.outcome == Outcome.REPAIRED
    assert statuses(report) == dict.fromkeys(DESCRIPTOR_FILES, MemberStatus.RECOVERED)
    for member in report.members:
        assert member.source == "local header scan"
        assert member.detail == "found by scanning local headers"
    assert read_zip(rebuilt) == DESCRIPTOR_FILES
    assert verify_blob(b64(rebuilt)).outcome == Outcome.INTACT


def test_descriptor_members_written_by_zipfile_are_salvaged_without_a_directory() -> None:
    archive = streamed_zip(FILES)
    truncated = archive[: zc.central_directory_offset(archive) + 10]
    rebuilt, report = repair_blob(b64(truncated))
    assert statuses(report) == dict.fromkeys(FILES, MemberStatus.RECOVERED)
    assert read_zip(rebuilt) == FILES


def test_last_stored_member_with_unsigned_descriptor_is_salvaged_at_end_of_input() -> None:
    entries = [
        zc.Entry("first.txt", b"one " * 50, zc.DEFLATED, descriptor="sig"),
        zc.Entry("last.txt", b"last " * 20, zc.STORED, descriptor="nosig"),
    ]
    archive = zc.build(entries)
    rebuilt, report = repair_blob(b64(archive[: zc.central_directory_offset(archive)]))
    assert statuses(report) == {
        "first.txt": MemberStatus.RECOVERED,
        "last.txt": MemberStatus.RECOVERED,
    }
    assert read_zip(rebuilt) == {"first.txt": b"one " * 50, "last.txt": b"last " * 20}


# --- compression methods and encryption -------------------------------------------------


def test_bzip2_members_round_trip_and_extract(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    archive = buf.getvalue()
    assert {e.method for e in read_directory(MemorySource(archive)).entries} == {12}
    assert_round_trip(archive, FILES)
    extract_blob(encode_zip_to_utf8_blob(archive), tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == FILES["a.txt"]


def test_damaged_bzip2_member_is_reported_damaged() -> None:
    data = b"bzip2 " * 500
    archive = bytearray(zc.build([zc.Entry("x.txt", data, zc.BZIP2)]))
    archive[30 + len("x.txt") + 20] ^= 0xFF  # inside the compressed stream
    report = verify_blob(b64(bytes(archive)))
    assert report.outcome == Outcome.DAMAGED
    member = report.member("x.txt")
    assert member.status == MemberStatus.DAMAGED
    assert member.detail  # says what failed: corrupt stream, size or CRC-32


def test_lzma_member_is_an_unsupported_method() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("ok.txt", b"fine")
    archive = buf.getvalue()
    message = "member 'ok.txt' uses compression method 14 (lzma); taskloop reads stored, deflate"
    for run in (
        lambda: encode_zip_to_utf8_blob(archive),
        lambda: decode_utf8_blob_to_zip(b64(archive)),
    ):
        with pytest.raises(UnsupportedMethodError) as info:
            run()
        assert info.value.code == "blob.unsupported_method"
        assert info.value.exit_status == ExitStatus.CORRUPT
        assert message in info.value.message
    # verify reports the member it cannot read instead of raising.
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.DAMAGED
    assert report.member("ok.txt").status == MemberStatus.DAMAGED
    assert message in report.member("ok.txt").detail


@pytest.mark.parametrize(
    ("method", "label"), [(93, "zstandard"), (9, "deflate64"), (77, "unknown")]
)
def test_other_methods_are_named_in_the_error(method: int, label: str) -> None:
    archive = zc.build([zc.Entry("m.bin", b"?", method=method, raw=b"\x00\x01\x02")])
    with pytest.raises(UnsupportedMethodError) as info:
        encode_zip_to_utf8_blob(archive)
    assert info.value.code == "blob.unsupported_method"
    assert f"member 'm.bin' uses compression method {method} ({label})" in info.value.message


@pytest.mark.parametrize("flag", [0x0001, 0x0041], ids=["traditional", "strong"])
def test_zip_password_encrypted_member_is_an_unsupported_method(flag: int) -> None:
    archive = zc.build([zc.Entry("secret.txt", b"\x8a" * 40, zc.STORED, flags=flag)])
    for run in (
        lambda: encode_zip_to_utf8_blob(archive),
        lambda: decode_utf8_blob_to_zip(b64(archive)),
    ):
        with pytest.raises(UnsupportedMethodError) as info:
            run()
        exc = info.value
        assert exc.code == "blob.unsupported_method"
        assert exc.message == (
            "member 'secret.txt' is encrypted with ZIP's own encryption, which taskloop does "
            "not read"
        )
        assert exc.hint is not None and "--key-file" in exc.hint


# --- local header against central entry -------------------------------------------------


def test_local_name_differing_from_central_name_is_a_structure_error() -> None:
    archive = zc.build([zc.Entry("report.txt", b"x", local_name="r3port.txt")])
    with pytest.raises(ZipStructureError) as info:
        encode_zip_to_utf8_blob(archive)
    assert info.value.code == "blob.zip_structure"
    assert info.value.message == (
        "member 'report.txt': local header at offset 0 names b'r3port.txt' instead"
    )


def test_stored_member_whose_sizes_disagree_is_damaged() -> None:
    archive = zc.build([zc.Entry("a.txt", b"x" * 10, size=12), zc.Entry("b.txt", b"fine")])
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.DAMAGED
    assert report.member("a.txt").status == MemberStatus.DAMAGED
    assert report.member("a.txt").detail == (
        "stored member declares 10 bytes stored but 12 bytes uncompressed"
    )
    assert report.member("b.txt").status == MemberStatus.INTACT


# --- junk around the archive, comments --------------------------------------------------

STUB = b"MZ\x90\x00" + b"self-extractor stub " * 10


@pytest.mark.parametrize("offsets_include_prefix", [False, True], ids=["cat", "zip-A"])
def test_self_extractor_stub_is_accepted_by_decode(offsets_include_prefix: bool) -> None:
    entries = [zc.Entry(name, data, zc.DEFLATED) for name, data in FILES.items()]
    archive = zc.build(entries, prefix=STUB, offsets_include_prefix=offsets_include_prefix)
    assert read_zip(archive) == FILES
    assert decode_utf8_blob_to_zip(b64(archive)) == archive
    assert decode_utf8_blob_to_zip(encode_zip_to_utf8_blob(archive)) == archive
    report = verify_blob(b64(archive))
    assert statuses(report) == dict.fromkeys(FILES, MemberStatus.INTACT)


def test_stub_with_shifted_offsets_verifies_intact() -> None:
    archive = zc.build([zc.Entry("a.txt", b"a")], prefix=STUB, offsets_include_prefix=True)
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.INTACT
    assert report.problems == []


def test_stub_before_unshifted_offsets_is_noted_by_verify() -> None:
    archive = zc.build([zc.Entry("a.txt", b"a")], prefix=STUB)
    report = verify_blob(b64(archive))
    assert report.member("a.txt").status == MemberStatus.INTACT
    assert report.problems == []
    assert report.notes == [f"{len(STUB)} bytes of junk before the archive"]
    assert report.outcome == Outcome.INTACT


@pytest.mark.parametrize(("prefix", "suffix"), [(STUB, b""), (b"", b"trailing junk")])
def test_blob_of_an_archive_with_junk_verifies_intact(prefix: bytes, suffix: bytes) -> None:
    archive = zc.build([zc.Entry("a.txt", b"a")], prefix=prefix, suffix=suffix)
    blob = encode_zip_to_utf8_blob(archive)
    assert decode_utf8_blob_to_zip(blob) == archive
    assert verify_blob(blob).outcome == Outcome.INTACT


def test_trailing_junk_is_accepted_by_decode_and_noted_by_verify() -> None:
    archive = zc.build([zc.Entry("a.txt", b"a"), zc.Entry("b.txt", b"b")], suffix=b"\0junk\n")
    assert read_zip(archive) == {"a.txt": b"a", "b.txt": b"b"}
    assert decode_utf8_blob_to_zip(b64(archive)) == archive
    assert decode_utf8_blob_to_zip(encode_zip_to_utf8_blob(archive)) == archive
    report = verify_blob(b64(archive))
    assert statuses(report) == {"a.txt": MemberStatus.INTACT, "b.txt": MemberStatus.INTACT}
    assert report.problems == []
    assert report.notes == ["6 bytes of junk after the archive"]


@pytest.mark.parametrize("comment", [b"made by hand", b"x" * 65535], ids=["short", "longest"])
def test_archive_comment_is_accepted(comment: bytes) -> None:
    entries = [zc.Entry(name, data, zc.DEFLATED) for name, data in FILES.items()]
    archive = zc.build(entries, comment=comment)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.comment == comment
    assert_round_trip(archive, FILES)
    assert read_directory(MemorySource(archive)).comment == comment


def test_comment_holding_a_fake_end_record_signature_is_accepted() -> None:
    # zipfile gives up on this one (it trusts the last PK\x05\x06); the reader tries the
    # earlier, real end record when the last candidate does not parse.
    comment = b"a fake end record PK\x05\x06 in the comment"
    entries = [zc.Entry(name, data, zc.DEFLATED) for name, data in FILES.items()]
    archive = zc.build(entries, comment=comment)
    directory = read_directory(MemorySource(archive))
    assert directory.comment == comment
    assert directory.end == len(archive)
    assert decode_utf8_blob_to_zip(encode_zip_to_utf8_blob(archive)) == archive
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.INTACT
    assert statuses(report) == dict.fromkeys(FILES, MemberStatus.INTACT)


# --- the raw ZIP writer -----------------------------------------------------------------


def _write(build: object) -> bytes:
    out = Collect()
    writer = RawZipWriter(out)
    build(writer)  # type: ignore[operator]
    writer.close()
    return out.getvalue()


def test_raw_writer_output_is_read_by_zipfile() -> None:
    source = zc.build(
        [
            zc.Entry("deflated.txt", b"deflate me " * 100, zc.DEFLATED),
            zc.Entry("stored.bin", bytes(range(200)), zc.STORED),
            zc.Entry("bz.txt", b"bzip " * 100, zc.BZIP2),
        ]
    )
    found = read_directory(MemorySource(source)).entries

    def fill(writer: RawZipWriter) -> None:
        for entry in found:
            start = entry.header_offset + 30 + len(entry.raw_name)
            writer.add_raw(
                raw_name=entry.raw_name,
                flags=entry.flags | zc.FLAG_DESCRIPTOR,  # dropped: sizes are in the header
                method=entry.method,
                dos_time=entry.dos_time,
                dos_date=entry.dos_date,
                crc=entry.crc32,
                compressed_size=entry.compressed_size,
                size=entry.size,
                data=[source[start : start + entry.compressed_size]],
                external_attr=zc.unix_attr(0o100755),
            )
        writer.add_bytes("ünïcode/名前.txt".encode(), b"added " * 50)

    archive = _write(fill)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert [i.filename for i in infos] == [
            "deflated.txt",
            "stored.bin",
            "bz.txt",
            "ünïcode/名前.txt",
        ]
        assert [i.compress_type for i in infos] == [8, 0, 12, 8]
        assert [i.create_system for i in infos] == [3, 3, 3, 3]
        assert [i.external_attr >> 16 for i in infos] == [0o100755] * 3 + [0o100644]
        assert [i.flag_bits & zc.FLAG_DESCRIPTOR for i in infos] == [0, 0, 0, 0]
        assert infos[3].flag_bits & zc.FLAG_UTF8
        assert zf.read("deflated.txt") == b"deflate me " * 100
        assert zf.read("stored.bin") == bytes(range(200))
        assert zf.read("bz.txt") == b"bzip " * 100
        assert zf.read("ünïcode/名前.txt") == b"added " * 50
    assert verify_blob(b64(archive)).outcome == Outcome.INTACT


def test_raw_writer_refuses_data_of_the_wrong_length() -> None:
    writer = RawZipWriter(Collect())
    with pytest.raises(ValueError, match=r"member b'x': wrote 3 bytes, expected 4"):
        writer.add_raw(
            raw_name=b"x",
            flags=0,
            method=0,
            dos_time=0,
            dos_date=zc.DOS_DATE_1980,
            crc=0,
            compressed_size=4,
            size=4,
            data=[b"abc"],
        )


@pytest.mark.parametrize(("count", "zip64"), [(65534, False), (65535, True)])
def test_raw_writer_switches_to_zip64_end_records_at_65535_entries(count: int, zip64: bool) -> None:
    def fill(writer: RawZipWriter) -> None:
        for i in range(count):
            writer.add_raw(
                raw_name=b"%05d" % i,
                flags=0,
                method=zc.STORED,
                dos_time=0,
                dos_date=zc.DOS_DATE_1980,
                crc=0,
                compressed_size=0,
                size=0,
                data=[],
            )

    archive = _write(fill)
    assert (zc.EOCD64_SIG in archive) is zip64
    eocd = archive[-22:]
    assert eocd[:4] == zc.EOCD_SIG
    assert struct.unpack("<HH", eocd[8:12]) == (min(count, 0xFFFF), min(count, 0xFFFF))
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert infos[-1].filename == f"{count - 1:05d}"
        assert zf.read(infos[-1]) == b""
    directory = read_directory(MemorySource(archive))
    assert directory.zip64 is zip64
    assert len(directory.entries) == count
    assert directory.entries[-1].header_offset == (count - 1) * (30 + 5)


# --- zipcraft, the test helper, builds what it says -------------------------------------


def test_zipcraft_truthful_archive_is_read_by_zipfile() -> None:
    entries = [
        zc.Entry("stored.txt", b"stored"),
        zc.Entry("deflated.txt", b"deflated " * 30, zc.DEFLATED),
        zc.Entry("bzip2.txt", b"bzip2 " * 30, zc.BZIP2),
        zc.Entry("lzma.txt", b"lzma " * 30, zc.LZMA),
        zc.Entry("sig.txt", b"sig " * 30, zc.DEFLATED, descriptor="sig"),
        zc.Entry("nosig.txt", b"nosig " * 30, zc.STORED, descriptor="nosig"),
        zc.Entry("z64.txt", b"z64 " * 30, zc.DEFLATED, zip64=True, descriptor="sig"),
        zc.Entry("dir/", b""),
        zc.Entry("ünï.txt", b"utf-8 name", external_attr=zc.unix_attr(0o100755)),
    ]
    archive = zc.build(entries, prefix=b"stub", suffix=b"tail", comment=b"hi", zip64_end=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.comment == b"hi"
        assert {i.filename: zf.read(i) for i in zf.infolist()} == {e.name: e.data for e in entries}
        infos = {i.filename: i for i in zf.infolist()}
    assert infos["ünï.txt"].flag_bits & zc.FLAG_UTF8
    assert infos["ünï.txt"].external_attr >> 16 == 0o100755
    assert infos["stored.txt"].external_attr >> 16 == 0o100644
    assert infos["dir/"].external_attr >> 16 == 0o40755
    assert infos["sig.txt"].flag_bits & zc.FLAG_DESCRIPTOR
    assert infos["lzma.txt"].compress_type == zipfile.ZIP_LZMA
    last = infos["ünï.txt"]
    assert zc.central_directory_offset(archive) == (
        last.header_offset + 30 + len("ünï.txt".encode()) + len(b"utf-8 name")
    )


def test_zipcraft_lies_are_recorded_where_asked() -> None:
    archive = zc.build(
        [
            zc.Entry("a", b"x" * 10, crc=0x12345678),
            zc.Entry("b", b"y", local_name="c"),
            zc.Entry("d", b"z", header_of=0),
        ]
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        infos = zf.infolist()
        assert [(i.filename, i.CRC, i.header_offset) for i in infos] == [
            ("a", 0x12345678, 0),
            ("b", zlib_crc(b"y"), 30 + 1 + 10),
            ("d", zlib_crc(b"z"), 0),
        ]
        with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32 for file 'a'"):
            zf.read("a")
        with pytest.raises(zipfile.BadZipFile, match="File name in directory 'b' and header"):
            zf.read("b")


def test_zipcraft_quoted_overlap_members_inflate_to_the_following_headers() -> None:
    kernel = b"\0" * 5000
    bomb = zc.quoted_overlap_bomb(3, kernel)
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["0000", "0001", "0002"]
    # Each local header is 30 + 4 bytes, followed by a 5-byte quoting block header.
    assert [i.header_offset for i in infos] == [0, 39, 78]
    headers = [bomb[i.header_offset : i.header_offset + 34] for i in infos]
    for index, info in enumerate(infos):
        start = info.header_offset + 34
        inflater = zlib_inflater()
        content = inflater.decompress(bomb[start : start + info.compress_size])
        assert inflater.eof
        assert content == b"".join(headers[index + 1 :]) + kernel
        assert (info.file_size, info.CRC) == (len(content), zlib_crc(content))
        # The data span of every member but the last holds the next member's header.
        if index < 2:
            assert start < infos[index + 1].header_offset < start + info.compress_size
