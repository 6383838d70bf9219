"""``extract_blob``: exactly the archive's files, never outside the target, never half-written."""

from __future__ import annotations

import base64
import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from taskloop.blob import (
    DEFAULT_LIMITS,
    ChecksumMismatchError,
    CriticalMemberError,
    LinkMemberError,
    ManifestEntry,
    MemberAction,
    MemberStatus,
    Outcome,
    Report,
    TargetExistsError,
    encode_zip_to_utf8_blob,
    extract_blob,
)
from taskloop.blob.extract import extract_archive
from taskloop.blob.source import MemorySource
from taskloop.errors import ExitStatus
from tests.blob import zipcraft as zc
from tests.conftest import make_zip

FILES = {
    "manifest.json": b'{"name": "t"}',
    "a.txt": b"alpha " * 300,
    "sub/b.bin": bytes(range(256)) * 8,
    "sub/deeper/c.txt": b"gamma " * 300,
}


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative POSIX path -> bytes)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def everything(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def b64(archive: bytes) -> str:
    return base64.b64encode(archive).decode("ascii")


def data_offset(archive: bytes, name: str) -> int:
    """Where ``name``'s compressed data starts in ``archive``."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        offset = zf.getinfo(name).header_offset
    name_len, extra_len = (
        int.from_bytes(archive[offset + 26 : offset + 28], "little"),
        int.from_bytes(archive[offset + 28 : offset + 30], "little"),
    )
    return offset + 30 + name_len + extra_len


def damage_blob(blob: str, archive_offset: int) -> str:
    """Change the base64 character that carries archive byte ``archive_offset`` (wrap=0).

    The character also carries a neighbouring byte; callers aim a few bytes into a
    member's data so that both are data, not the header in front of it.
    """
    start = blob.index("\nC ") + 1
    start = blob.index("\n", start) + 1
    pos = start + 4 * (archive_offset // 3) + 1
    new = "A" if blob[pos] != "A" else "B"
    return blob[:pos] + new + blob[pos + 1 :]


def damaged_zip(files: dict[str, bytes], victim: str) -> bytes:
    """A stored archive of ``files`` whose member ``victim`` has one byte changed."""
    archive = bytearray(make_zip(files, zipfile.ZIP_STORED))
    archive[data_offset(bytes(archive), victim) + 3] ^= 0x55
    return bytes(archive)


# --- what lands on disk -----------------------------------------------------------------


def test_extract_writes_exactly_the_archive_files(tmp_path: Path) -> None:
    blob = encode_zip_to_utf8_blob(make_zip(FILES))
    report = extract_blob(blob, tmp_path / "out")
    assert tree(tmp_path / "out") == FILES
    assert everything(tmp_path / "out") == [
        "a.txt",
        "manifest.json",
        "sub",
        "sub/b.bin",
        "sub/deeper",
        "sub/deeper/c.txt",
    ]
    assert report.operation == "extract"
    assert report.outcome == Outcome.INTACT
    assert report.output == str(tmp_path / "out")
    by_name = {m.name: m for m in report.members}
    assert set(by_name) == set(FILES)
    for name, content in FILES.items():
        member = by_name[name]
        assert member.status == MemberStatus.INTACT
        assert member.action == MemberAction.KEPT
        assert member.actual_size == len(content)
        assert member.verified_by == ["crc32", "sha256"]  # the blob's manifest vouches too


def test_extract_from_bare_base64_verifies_by_crc_only(tmp_path: Path) -> None:
    report = extract_blob(b64(make_zip(FILES)), tmp_path / "out")
    assert tree(tmp_path / "out") == FILES
    assert {m.name: m.verified_by for m in report.members} == {n: ["crc32"] for n in FILES}


def test_extract_creates_directory_entries_and_missing_parents(tmp_path: Path) -> None:
    archive = make_zip({"empty/": b"", "top.txt": b"t"})
    extract_blob(encode_zip_to_utf8_blob(archive), tmp_path / "a" / "b" / "out")
    out = tmp_path / "a" / "b" / "out"
    assert everything(out) == ["empty", "top.txt"]
    assert (out / "empty").is_dir()
    assert (out / "top.txt").read_bytes() == b"t"


def test_many_files_extracted_in_parallel_are_all_whole(tmp_path: Path) -> None:
    files = {f"d{i % 7}/f{i:03d}.txt": f"file {i}\n".encode() * (i + 1) for i in range(200)}
    extract_blob(encode_zip_to_utf8_blob(make_zip(files)), tmp_path / "out", workers=4)
    assert tree(tmp_path / "out") == files


def test_executable_bit_is_kept_and_other_modes_become_0644(tmp_path: Path) -> None:
    archive = zc.build(
        [
            zc.Entry("run.sh", b"#!/bin/sh\n", external_attr=zc.unix_attr(0o100755)),
            zc.Entry("group-exec", b"g", external_attr=zc.unix_attr(0o100710)),
            zc.Entry("private.txt", b"p", external_attr=zc.unix_attr(0o100600)),
            zc.Entry("world.txt", b"w", external_attr=zc.unix_attr(0o100666)),
            zc.Entry("setuid", b"s", external_attr=zc.unix_attr(0o104644)),
            # DOS attributes carry no Unix mode, whatever the high bits hold.
            zc.Entry("dos.txt", b"d", create_system=zc.SYSTEM_DOS, external_attr=0o100755 << 16),
        ]
    )
    extract_blob(b64(archive), tmp_path / "out")
    modes = {p.name: p.stat().st_mode & 0o7777 for p in (tmp_path / "out").iterdir()}
    assert modes == {
        "run.sh": 0o755,
        "group-exec": 0o755,
        "private.txt": 0o644,
        "world.txt": 0o644,
        "setuid": 0o644,
        "dos.txt": 0o644,
    }


def test_modification_time_comes_from_the_archive(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("dated.txt", date_time=(2021, 3, 4, 5, 6, 8)), b"x")
    extract_blob(b64(buf.getvalue()), tmp_path / "out")
    expected = time.mktime((2021, 3, 4, 5, 6, 8, 0, 0, -1))
    assert (tmp_path / "out" / "dated.txt").stat().st_mtime == expected


# --- links in the target ----------------------------------------------------------------


def test_symlinked_directory_in_the_target_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "data").symlink_to(outside, target_is_directory=True)
    blob = encode_zip_to_utf8_blob(make_zip({"data/x": b"pwned"}))
    with pytest.raises(LinkMemberError) as info:
        extract_blob(blob, target)
    exc = info.value
    assert exc.code == "blob.unsafe.link"
    assert exc.exit_status == ExitStatus.UNSAFE
    assert exc.member == "data/x"
    assert "'data' in the target is a symbolic link or not a directory" in exc.message
    assert everything(outside) == []
    assert everything(target) == ["data"]
    assert (target / "data").is_symlink()


def test_symlink_higher_up_the_member_path_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    (target / "a").mkdir(parents=True)
    (target / "a" / "b").symlink_to(outside, target_is_directory=True)
    blob = encode_zip_to_utf8_blob(make_zip({"a/b/c/d.txt": b"pwned"}))
    with pytest.raises(LinkMemberError) as info:
        extract_blob(blob, target)
    assert info.value.member == "a/b/c/d.txt"
    assert "'b' in the target is a symbolic link" in info.value.message
    assert everything(outside) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_symlinked_file_in_the_target_is_refused_and_not_followed(
    tmp_path: Path, overwrite: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "target"
    target.mkdir()
    (target / "x.txt").symlink_to(victim)
    blob = encode_zip_to_utf8_blob(make_zip({"x.txt": b"pwned"}))
    with pytest.raises(LinkMemberError) as info:
        extract_blob(blob, target, overwrite=overwrite)
    assert info.value.code == "blob.unsafe.link"
    assert info.value.member == "x.txt"
    assert "the target already holds a symbolic link there" in info.value.message
    assert victim.read_bytes() == b"precious"
    assert everything(outside) == ["victim.txt"]
    assert everything(target) == ["x.txt"]


# --- existing files ---------------------------------------------------------------------


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_bytes(b"mine")
    blob = encode_zip_to_utf8_blob(make_zip({"a.txt": b"theirs"}))
    with pytest.raises(TargetExistsError) as info:
        extract_blob(blob, target)
    exc = info.value
    assert exc.code == "blob.target_exists"
    assert exc.exit_status == ExitStatus.IO == 7
    assert exc.message == "cannot extract 'a.txt': the file already exists"
    assert exc.hint == "pass --overwrite to replace existing files"
    assert (target / "a.txt").read_bytes() == b"mine"
    assert everything(target) == ["a.txt"]


def test_existing_file_is_replaced_with_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_bytes(b"mine, and longer than theirs")
    (target / "other.txt").write_bytes(b"untouched")
    blob = encode_zip_to_utf8_blob(make_zip({"a.txt": b"theirs"}))
    extract_blob(blob, target, overwrite=True)
    assert tree(target) == {"a.txt": b"theirs", "other.txt": b"untouched"}


def test_directory_where_a_file_goes_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "a.txt").mkdir(parents=True)
    blob = encode_zip_to_utf8_blob(make_zip({"a.txt": b"theirs"}))
    with pytest.raises(TargetExistsError) as info:
        extract_blob(blob, target, overwrite=True)
    assert info.value.code == "blob.target_exists"
    assert info.value.message == "cannot extract 'a.txt': something other than a file is there"
    assert everything(target) == ["a.txt"]


# --- failures leave nothing half-written --------------------------------------------------


def test_damaged_member_in_bare_base64_extracts_nothing(tmp_path: Path) -> None:
    archive = damaged_zip({"good.txt": b"good " * 50, "bad.txt": b"bad " * 50}, "bad.txt")
    with pytest.raises(ChecksumMismatchError) as info:
        extract_blob(b64(archive), tmp_path / "out")
    exc = info.value
    assert exc.code == "blob.checksum"
    assert exc.member == "bad.txt"
    assert exc.kind == "crc32"
    assert "member 'bad.txt' is damaged: CRC-32 is" in exc.message
    assert everything(tmp_path) == []


def test_member_failing_its_crc_while_extracting_leaves_no_partial_file(tmp_path: Path) -> None:
    # Below the public API, extraction itself must verify what it writes and clean up.
    files = {"good.txt": b"good " * 50, "bad.txt": b"bad " * 50}
    archive = damaged_zip(files, "bad.txt")
    report = Report("extract")
    with pytest.raises(ChecksumMismatchError) as info:
        extract_archive(
            MemorySource(archive),
            tmp_path / "out",
            report,
            manifest=None,
            limits=DEFAULT_LIMITS,
            workers=1,
        )
    exc = info.value
    assert exc.member == "bad.txt"
    assert exc.kind == "crc32"
    assert exc.expected == f"{zipfile.ZipFile(io.BytesIO(archive)).getinfo('bad.txt').CRC:08x}"
    assert "member 'bad.txt' is damaged (CRC-32 is" in exc.message
    assert "; not extracted" in exc.message
    leftovers = [p for p in everything(tmp_path) if p.endswith(".partial")]
    assert leftovers == []
    assert not (tmp_path / "out" / "bad.txt").exists()


def test_member_failing_its_manifest_sha256_leaves_no_partial_file(tmp_path: Path) -> None:
    archive = make_zip({"a.txt": b"alpha"})
    wrong = ManifestEntry(
        name="a.txt", size=5, compressed_size=7, method=8, crc32=0, sha256="0" * 64
    )
    with pytest.raises(ChecksumMismatchError) as info:
        extract_archive(
            MemorySource(archive),
            tmp_path / "out",
            Report("extract"),
            manifest=[wrong],
            limits=DEFAULT_LIMITS,
        )
    exc = info.value
    assert (exc.member, exc.kind, exc.expected) == ("a.txt", "sha256", "0" * 64)
    assert exc.actual == "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"
    assert everything(tmp_path / "out") == []


def test_damaged_blob_without_repair_extracts_nothing(tmp_path: Path) -> None:
    archive = make_zip(FILES, zipfile.ZIP_STORED)
    blob = damage_blob(encode_zip_to_utf8_blob(archive, wrap=0), data_offset(archive, "a.txt") + 3)
    with pytest.raises(ChecksumMismatchError) as info:
        extract_blob(blob, tmp_path / "out")
    assert info.value.code == "blob.checksum"
    assert info.value.member == "a.txt"
    assert everything(tmp_path) == []


# --- extract with repair ----------------------------------------------------------------


def test_extract_with_repair_writes_only_the_members_that_verify(tmp_path: Path) -> None:
    archive = make_zip(FILES, zipfile.ZIP_STORED)
    blob = damage_blob(encode_zip_to_utf8_blob(archive, wrap=0), data_offset(archive, "a.txt") + 3)
    report = extract_blob(blob, tmp_path / "out", repair=True)
    assert report.outcome == Outcome.REPAIRED_WITH_LOSSES
    assert report.output == str(tmp_path / "out")
    lost = report.member("a.txt")
    assert (lost.status, lost.action) == (MemberStatus.DAMAGED, MemberAction.SKIPPED)
    kept = {m.name for m in report.members if m.action == MemberAction.KEPT}
    assert kept == {"manifest.json", "sub/b.bin", "sub/deeper/c.txt"}
    expected = {name: data for name, data in FILES.items() if name != "a.txt"}
    assert tree(tmp_path / "out") == expected
    assert [p for p in everything(tmp_path) if p.endswith(".partial")] == []


def test_extract_with_repair_writes_the_template_for_a_lost_member(tmp_path: Path) -> None:
    archive = make_zip(FILES, zipfile.ZIP_STORED)
    blob = damage_blob(encode_zip_to_utf8_blob(archive, wrap=0), data_offset(archive, "a.txt") + 3)
    report = extract_blob(blob, tmp_path / "out", repair=True, template=b"{}\n")
    assert report.member("a.txt").action == MemberAction.REPLACED
    assert tree(tmp_path / "out") == {**FILES, "a.txt": b"{}\n"}


def test_extract_with_repair_of_a_lost_critical_member_writes_nothing(tmp_path: Path) -> None:
    archive = make_zip(FILES, zipfile.ZIP_STORED)
    offset = data_offset(archive, "manifest.json") + 3
    blob = damage_blob(encode_zip_to_utf8_blob(archive, wrap=0), offset)
    with pytest.raises(CriticalMemberError) as info:
        extract_blob(blob, tmp_path / "out", repair=True)
    exc = info.value
    assert exc.code == "blob.critical_damaged"
    assert "'manifest.json' could not be recovered; nothing was written" in exc.message
    assert isinstance(exc.report, Report)
    assert exc.report.member("manifest.json").status == MemberStatus.DAMAGED
    assert everything(tmp_path) == []


def test_extract_with_repair_of_an_intact_blob_is_a_plain_extract(tmp_path: Path) -> None:
    report = extract_blob(encode_zip_to_utf8_blob(make_zip(FILES)), tmp_path / "out", repair=True)
    assert report.outcome == Outcome.INTACT
    assert tree(tmp_path / "out") == FILES
    assert not any(name.endswith(".partial") for name in os.listdir(tmp_path))
