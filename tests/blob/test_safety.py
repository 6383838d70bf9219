"""Hostile archives through the public API: every one is refused with a precise typed error.

Each archive is built here (with ``zipcraft`` where ``zipfile`` would refuse) and fed to
every entry point: ``encode_zip_to_utf8_blob`` on the raw ZIP, ``decode_utf8_blob_to_zip``
and ``verify_blob`` on its bare base64, and ``extract_blob`` into ``tmp_path``. After a
refused extraction nothing at all may exist under ``tmp_path``.
"""

from __future__ import annotations

import base64
import functools
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloop.blob import (
    DEFAULT_LIMITS,
    BadNameError,
    DuplicateNameError,
    LimitExceededError,
    Limits,
    LinkMemberError,
    MemberStatus,
    NestingError,
    Outcome,
    OverlapError,
    PathTraversalError,
    UnsafeArchiveError,
    decode_utf8_blob_to_zip,
    encode_zip_to_utf8_blob,
    extract_blob,
    repair_blob,
    verify_blob,
)
from taskloop.blob.errors import BlobError
from taskloop.errors import ExitStatus
from taskloop.log import logger
from tests.blob import zipcraft as zc
from tests.conftest import make_zip, read_zip

OPERATIONS = ("encode", "decode", "verify", "extract")
MiB = 1 << 20
BOMB_SIZE = 50 * MiB


def b64(archive: bytes) -> str:
    return base64.b64encode(archive).decode("ascii")


def run(operation: str, archive: bytes, tmp_path: Path, limits: Limits = DEFAULT_LIMITS) -> object:
    """One public entry point on ``archive`` (raw for encode, bare base64 for the others)."""
    if operation == "encode":
        return encode_zip_to_utf8_blob(archive, limits=limits)
    if operation == "decode":
        return decode_utf8_blob_to_zip(b64(archive), limits=limits)
    if operation == "verify":
        return verify_blob(b64(archive), limits=limits)
    assert operation == "extract"
    return extract_blob(b64(archive), tmp_path / "out", limits=limits)


def refused(
    operation: str,
    archive: bytes,
    tmp_path: Path,
    error: type[UnsafeArchiveError],
    code: str,
    *,
    member: str | None,
    limits: Limits = DEFAULT_LIMITS,
    **attributes: object,
) -> str:
    """Run ``operation``, check the exact error class, code, member and attributes, and
    that nothing was written anywhere under ``tmp_path``; return the message."""
    with pytest.raises(UnsafeArchiveError) as info:
        run(operation, archive, tmp_path, limits)
    exc = info.value
    assert type(exc) is error, f"{type(exc).__name__}: {exc}"
    assert exc.code == code
    assert exc.exit_status == ExitStatus.UNSAFE == 5
    assert exc.member == member
    for name, value in attributes.items():
        assert getattr(exc, name) == value, name
    assert sorted(tmp_path.rglob("*")) == []
    return exc.message


def regular(name: str | bytes, data: bytes = b"data", **fields: object) -> zc.Entry:
    return zc.Entry(name, data, **fields)  # type: ignore[arg-type]


# --- exit status ------------------------------------------------------------------------


def test_unsafe_errors_exit_with_status_5_and_keep_their_codes() -> None:
    expected = {
        UnsafeArchiveError: "blob.unsafe",
        PathTraversalError: "blob.unsafe.path",
        BadNameError: "blob.unsafe.name",
        LinkMemberError: "blob.unsafe.link",
        DuplicateNameError: "blob.unsafe.duplicate",
        OverlapError: "blob.unsafe.overlap",
        LimitExceededError: "blob.unsafe.limit",
        NestingError: "blob.unsafe.nesting",
    }
    for cls, code in expected.items():
        assert cls.code == code
        assert int(cls.exit_status) == 5
    exc = PathTraversalError("member name '../x' climbs out", member="../x")
    assert exc.to_dict() == {
        "code": "blob.unsafe.path",
        "exit_status": 5,
        "message": "member name '../x' climbs out",
        "hint": None,
    }
    # An ordinary damaged archive is a different status: unsafe is not corrupt.
    assert int(BlobError.exit_status) == 4


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI points taskloop's logger at its own stderr; put the logger back afterwards."""
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_cli_verify_of_a_traversing_archive_exits_5(tmp_path: Path) -> None:
    from taskloop.cli import app

    blob = tmp_path / "evil.b64"
    blob.write_text(b64(make_zip({"ok.txt": b"fine", "../evil.txt": b"pwned"})))
    result = CliRunner().invoke(app, ["blob", "verify", str(blob)])
    assert result.exit_code == 5
    assert "error[blob.unsafe.path]" in result.stderr
    assert "'../evil.txt'" in result.stderr


# --- overlapping entries ----------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_entries_sharing_one_local_header_are_an_overlap(operation: str, tmp_path: Path) -> None:
    kernel = zc.compress(b"\0" * 100_000, zc.DEFLATED)
    crc = zlib.crc32(b"\0" * 100_000)
    entries = [zc.Entry("0", raw=kernel, method=zc.DEFLATED, crc=crc, size=100_000)]
    entries += [
        zc.Entry(str(i), raw=kernel, method=zc.DEFLATED, crc=crc, size=100_000, header_of=0)
        for i in range(1, 10)
    ]
    message = refused(
        operation, zc.build(entries), tmp_path, OverlapError, "blob.unsafe.overlap", member="1"
    )
    assert "members '0' and '1' share the local header at offset 0" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_quoted_overlap_bomb_is_refused(operation: str, tmp_path: Path) -> None:
    bomb = zc.quoted_overlap_bomb(5, b"\0" * 10_000)
    message = refused(operation, bomb, tmp_path, OverlapError, "blob.unsafe.overlap", member="0001")
    # Member 0001's header starts after member 0000's 30 + 4 byte header and the 5-byte
    # stored block header that quotes it.
    assert "'0001' starts at offset 39, inside the data of '0000'" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_compressed_size_reaching_into_the_next_member_is_an_overlap(
    operation: str, tmp_path: Path
) -> None:
    archive = zc.build([regular("a", b"x" * 100, compressed_size=150), regular("b", b"y" * 100)])
    message = refused(operation, archive, tmp_path, OverlapError, "blob.unsafe.overlap", member="b")
    # b's header is at 30 + 1 + 100 = 131; a's data claims 31 .. 31 + 150 = 181.
    assert "'b' starts at offset 131, inside the data of 'a' (offsets 0-181)" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_data_running_into_the_central_directory_is_an_overlap(
    operation: str, tmp_path: Path
) -> None:
    archive = zc.build([regular("a", b"x" * 100, size=120, compressed_size=120)])
    message = refused(operation, archive, tmp_path, OverlapError, "blob.unsafe.overlap", member="a")
    assert "runs into the central directory at offset 131" in message


# --- compression bombs ------------------------------------------------------------------


@functools.cache
def deflated_zeros() -> bytes:
    """50 MiB of zeros, deflated (about 50 KB: a ratio near 1030:1)."""
    return zc.compress(b"\0" * BOMB_SIZE, zc.DEFLATED)


ZEROS_CRC = zlib.crc32(bytes(BOMB_SIZE))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_bomb_with_a_truthful_directory_is_refused_from_its_declared_ratio(
    operation: str, tmp_path: Path
) -> None:
    raw = deflated_zeros()
    archive = zc.build(
        [zc.Entry("bomb.bin", raw=raw, method=zc.DEFLATED, crc=ZEROS_CRC, size=BOMB_SIZE)]
    )
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member="bomb.bin",
        limit="max_ratio",
        value=BOMB_SIZE / len(raw),
        maximum=100.0,
    )
    assert f"declares a compression ratio of {BOMB_SIZE / len(raw):.0f}:1" in message
    assert f"({len(raw)} -> {BOMB_SIZE} bytes)" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_bomb_whose_directory_lies_is_caught_while_inflating(
    operation: str, tmp_path: Path
) -> None:
    # The directory claims 600,000 compressed bytes (the stream is padded with zeros the
    # inflater never reads), a declared ratio of 87:1, under the limit of 100. The real
    # stream is ~1030:1, which shows once the member has produced its 1 MiB of grace.
    raw = deflated_zeros()
    padded = raw + bytes(600_000 - len(raw))
    archive = zc.build(
        [zc.Entry("bomb.bin", raw=padded, method=zc.DEFLATED, crc=ZEROS_CRC, size=BOMB_SIZE)]
    )
    assert BOMB_SIZE / len(padded) < 100
    with pytest.raises(LimitExceededError) as info:
        run(operation, archive, tmp_path)
    exc = info.value
    assert type(exc) is LimitExceededError
    assert exc.code == "blob.unsafe.limit"
    assert exc.exit_status == 5
    assert exc.member == "bomb.bin"
    assert exc.limit == "max_ratio"
    assert exc.maximum == 100.0
    assert exc.value > 1000  # the real ratio, not the declared one
    assert "member 'bomb.bin' inflates at a ratio of" in exc.message
    assert "over the limit of 100:1" in exc.message
    assert sorted(tmp_path.rglob("*")) == []


def test_bomb_declaring_a_small_size_is_damage_and_inflating_stops_early() -> None:
    archive = zc.build([zc.Entry("bomb.bin", raw=deflated_zeros(), method=zc.DEFLATED, size=1000)])
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.DAMAGED
    member = report.member("bomb.bin")
    assert member.status == MemberStatus.DAMAGED
    assert member.detail == "inflates to more than its declared 1000 bytes"
    # Inflating stopped after one output step (at most 4 MiB), not after 50 MiB.
    assert member.actual_size is not None
    assert 1000 < member.actual_size <= 4 * MiB


def test_bomb_with_unknown_sizes_is_caught_while_salvaging() -> None:
    # A data descriptor and no central directory: repair must inflate without any
    # declared size, so only the ratio of the bytes actually produced can stop it.
    archive = zc.build(
        [
            zc.Entry(
                "bomb.bin",
                raw=deflated_zeros(),
                method=zc.DEFLATED,
                crc=ZEROS_CRC,
                size=BOMB_SIZE,
                descriptor="sig",
            )
        ]
    )
    truncated = archive[: zc.central_directory_offset(archive)]
    with pytest.raises(LimitExceededError) as info:
        repair_blob(b64(truncated))
    exc = info.value
    assert type(exc) is LimitExceededError
    assert exc.code == "blob.unsafe.limit"
    assert (exc.limit, exc.member, exc.maximum) == ("max_ratio", "bomb.bin", 100.0)
    assert exc.value > 1000


# --- size and count limits --------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_member_over_max_member_size_is_refused(operation: str, tmp_path: Path) -> None:
    archive = make_zip({"small.txt": b"s" * 1000, "big.txt": b"b" * 1001})
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member="big.txt",
        limits=Limits(max_member_size=1000),
        limit="max_member_size",
        value=1001,
        maximum=1000,
    )
    assert "declares 1001 bytes uncompressed, over the per-member limit of 1000" in message


def test_member_exactly_at_max_member_size_is_accepted() -> None:
    archive = make_zip({"small.txt": b"s" * 1000})
    blob = encode_zip_to_utf8_blob(archive, limits=Limits(max_member_size=1000))
    assert decode_utf8_blob_to_zip(blob, limits=Limits(max_member_size=1000)) == archive


def test_member_size_is_enforced_while_salvaging_without_declared_sizes() -> None:
    archive = zc.build([zc.Entry("big.txt", b"0123456789" * 300, zc.DEFLATED, descriptor="sig")])
    truncated = archive[: zc.central_directory_offset(archive)]
    with pytest.raises(LimitExceededError) as info:
        repair_blob(b64(truncated), limits=Limits(max_member_size=1000))
    exc = info.value
    assert type(exc) is LimitExceededError
    assert (exc.code, exc.limit, exc.member, exc.maximum) == (
        "blob.unsafe.limit",
        "max_member_size",
        "big.txt",
        1000,
    )
    assert exc.value == 3000  # the whole member came out of the inflater in one step
    assert "inflates to more than 1000 bytes, the per-member limit" in exc.message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_declared_total_over_max_total_size_is_refused(operation: str, tmp_path: Path) -> None:
    archive = make_zip({f"f{i}.txt": bytes([65 + i]) * 1000 for i in range(3)})
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member=None,
        limits=Limits(max_total_size=2500),
        limit="max_total_size",
        value=3000,
        maximum=2500,
    )
    assert "archive declares 3000 bytes uncompressed in total, over the limit of 2500" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_total_size_counts_what_nested_archives_inflate_to(operation: str, tmp_path: Path) -> None:
    inner = make_zip({"z0.bin": bytes(1000), "z1.bin": bytes(1000)})
    archive = make_zip({"inner.zip": inner})
    # Each directory alone is under the limit: the outer one declares len(inner) bytes,
    # the inner one 2000. Inflated together they come to len(inner) + 2000.
    limit = len(inner) + 1999
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member="z1.bin",
        limits=Limits(max_total_size=limit),
        limit="max_total_size",
        value=len(inner) + 2000,
        maximum=limit,
    )
    assert f"more than {limit} bytes in total (reached while inflating 'z1.bin')" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_more_members_than_max_members_is_refused(operation: str, tmp_path: Path) -> None:
    archive = make_zip({f"f{i}": b"x" for i in range(4)})
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member=None,
        limits=Limits(max_members=3),
        limit="max_members",
        value=4,
        maximum=3,
    )
    assert "archive declares 4 members, over the limit of 3" in message


def test_exactly_max_members_is_accepted() -> None:
    archive = make_zip({f"f{i}": b"x" for i in range(3)})
    report = verify_blob(b64(archive), limits=Limits(max_members=3))
    assert report.outcome == Outcome.INTACT
    assert [m.name for m in report.members] == ["f0", "f1", "f2"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_path_deeper_than_max_path_depth_is_refused(operation: str, tmp_path: Path) -> None:
    archive = make_zip({"a/b/c.txt": b"ok", "a/b/c/d.txt": b"deep"})
    message = refused(
        operation,
        archive,
        tmp_path,
        LimitExceededError,
        "blob.unsafe.limit",
        member="a/b/c/d.txt",
        limits=Limits(max_path_depth=3),
        limit="max_path_depth",
        value=4,
        maximum=3,
    )
    assert "is 4 directories deep, over the limit of 3" in message


def test_path_exactly_max_path_depth_deep_is_extracted(tmp_path: Path) -> None:
    archive = make_zip({"a/b/c.txt": b"ok", "a/b/c/": b""})
    extract_blob(b64(archive), tmp_path / "out", limits=Limits(max_path_depth=3))
    assert (tmp_path / "out/a/b/c.txt").read_bytes() == b"ok"
    assert (tmp_path / "out/a/b/c").is_dir()


def test_limits_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match="limit max_ratio must be >= 0, got -1"):
        Limits(max_ratio=-1)


# --- names that escape or confuse -------------------------------------------------------

TRAVERSAL = [
    ("../x", "has a '..' component that climbs out of the target"),
    ("a/../../x", "has a '..' component"),
    ("a/..", "has a '..' component"),
    ("/etc/x", "is an absolute path"),
    ("C:\\x", "contains a backslash"),
    ("C:x", "starts with a drive letter"),
    ("c:/x", "starts with a drive letter"),
    ("..\\x", "contains a backslash"),
    ("a\\b.txt", "contains a backslash"),
]

BAD_NAMES = [
    ("a\x00b", "contains NUL at character 1"),
    ("ab\x1b[31m", "contains control character U+001B at character 2"),
    ("line\nbreak", "contains control character U+000A at character 4"),
    ("del\x7f", "contains control character U+007F at character 3"),
    ("a//b", "has an empty or '.' path component"),
    ("./a", "has an empty or '.' path component"),
    ("a/./b", "has an empty or '.' path component"),
    ("x" * 256, "has a component longer than 255 bytes"),
    ("d/" * 512 + "f", "member name of 1025 bytes is longer than 1024"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("name", "why"), TRAVERSAL, ids=[n for n, _ in TRAVERSAL])
def test_traversing_names_are_refused(operation: str, name: str, why: str, tmp_path: Path) -> None:
    archive = zc.build([regular("fine.txt"), regular(name, b"pwned")])
    message = refused(
        operation, archive, tmp_path, PathTraversalError, "blob.unsafe.path", member=name
    )
    assert why in message
    assert repr(name) in message


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("name", "why"), BAD_NAMES, ids=[repr(n)[:20] for n, _ in BAD_NAMES])
def test_bad_names_are_refused(operation: str, name: str, why: str, tmp_path: Path) -> None:
    archive = zc.build([regular("fine.txt"), regular(name, b"bad")])
    message = refused(operation, archive, tmp_path, BadNameError, "blob.unsafe.name", member=name)
    assert why in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_empty_name_is_refused(operation: str, tmp_path: Path) -> None:
    archive = zc.build([regular("fine.txt"), regular(b"")])
    message = refused(operation, archive, tmp_path, BadNameError, "blob.unsafe.name", member="")
    assert message == "member with an empty name"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_name_flagged_utf8_that_is_not_utf8_is_refused(operation: str, tmp_path: Path) -> None:
    archive = zc.build([regular(b"bad\xff.txt", flags=zc.FLAG_UTF8)])
    message = refused(
        operation, archive, tmp_path, BadNameError, "blob.unsafe.name", member="bad\\xff.txt"
    )
    assert "is flagged UTF-8 but byte 3 is not valid UTF-8" in message


def test_cp437_name_without_the_utf8_flag_is_read_as_cp437(tmp_path: Path) -> None:
    archive = zc.build([regular(b"caf\x82.txt", b"coffee")])  # 0x82 is 'é' in code page 437
    extract_blob(b64(archive), tmp_path / "out")
    assert (tmp_path / "out" / "café.txt").read_bytes() == b"coffee"


def test_every_extract_refusal_leaves_an_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_bytes(b"mine")
    archive = zc.build([regular("a.txt", b"first"), regular("../escape.txt", b"pwned")])
    with pytest.raises(PathTraversalError) as info:
        extract_blob(b64(archive), target)
    assert info.value.member == "../escape.txt"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "out",
        "out/keep.txt",
    ]
    assert (target / "keep.txt").read_bytes() == b"mine"


# --- links and special files ------------------------------------------------------------

SPECIAL = [
    (0o120777, "is a symbolic link; taskloop never extracts links"),
    (0o020644, f"is a special file (mode {oct(stat.S_IFCHR)}), not a regular file"),
    (0o060660, f"is a special file (mode {oct(stat.S_IFBLK)}), not a regular file"),
    (0o010644, f"is a special file (mode {oct(stat.S_IFIFO)}), not a regular file"),
    (0o140755, f"is a special file (mode {oct(stat.S_IFSOCK)}), not a regular file"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("mode", "why"), SPECIAL, ids=["link", "chr", "blk", "fifo", "sock"])
def test_links_and_device_files_are_refused(
    operation: str, mode: int, why: str, tmp_path: Path
) -> None:
    archive = zc.build(
        [regular("fine.txt"), regular("dev", b"/etc/passwd", external_attr=zc.unix_attr(mode))]
    )
    message = refused(
        operation, archive, tmp_path, LinkMemberError, "blob.unsafe.link", member="dev"
    )
    assert message == f"member 'dev' {why}"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_windows_reparse_point_is_refused(operation: str, tmp_path: Path) -> None:
    archive = zc.build(
        [regular("junction", create_system=zc.SYSTEM_DOS, external_attr=0x400 | 0x10)]
    )
    message = refused(
        operation, archive, tmp_path, LinkMemberError, "blob.unsafe.link", member="junction"
    )
    assert "is a Windows reparse point (link or junction)" in message


def test_unix_attributes_of_a_regular_executable_are_accepted() -> None:
    archive = zc.build([regular("run.sh", b"#!/bin/sh\n", external_attr=zc.unix_attr(0o100755))])
    report = verify_blob(b64(archive))
    assert report.outcome == Outcome.INTACT
    assert report.member("run.sh").status == MemberStatus.INTACT


# --- duplicates and collisions ----------------------------------------------------------

DUPLICATES = [
    (["a.txt", "a.txt"], "a.txt", "member name 'a.txt' appears twice"),
    (
        ["README.md", "readme.md"],
        "readme.md",
        "member names 'README.md' and 'readme.md' differ only in case",
    ),
    (
        ["caf\u00e9.txt", "cafe\u0301.txt"],  # NFC, then NFD
        "cafe\u0301.txt",
        "differ only in case or Unicode normalisation",
    ),
    (["Data/X.txt", "data/x.txt"], "data/x.txt", "differ only in case"),
    (["a", "a/b"], "a", "path 'a' is used both as a file and as a directory"),
    (["a/b", "a"], "a", "path 'a' is used both as a file and as a directory"),
    (["Dir/x", "dir"], "dir", "path 'dir' is used both as a file and as a directory"),
    (["d/", "d"], "d", "path 'd' is used both as a file and as a directory"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("names", "member", "why"), DUPLICATES, ids=["+".join(d[0]) for d in DUPLICATES]
)
def test_duplicate_and_colliding_names_are_refused(
    operation: str, names: list[str], member: str, why: str, tmp_path: Path
) -> None:
    archive = zc.build([regular(name, b"" if name.endswith("/") else b"x") for name in names])
    message = refused(
        operation, archive, tmp_path, DuplicateNameError, "blob.unsafe.duplicate", member=member
    )
    assert why in message


# --- nested archives --------------------------------------------------------------------


def nested(levels: int) -> bytes:
    """An archive holding ``levels`` archives one inside the other (``levels=0``: none)."""
    archive = make_zip({"leaf.txt": b"leaf"})
    for depth in range(levels, 0, -1):
        archive = make_zip({f"level{depth}.zip": archive, "note.txt": b"n"})
    return archive


@pytest.mark.parametrize("operation", OPERATIONS)
def test_nested_archive_over_max_nesting_zero_is_refused(operation: str, tmp_path: Path) -> None:
    message = refused(
        operation,
        nested(1),
        tmp_path,
        NestingError,
        "blob.unsafe.nesting",
        member="level1.zip",
        limits=Limits(max_nesting=0),
        limit="max_nesting",
        value=1,
        maximum=0,
    )
    assert "is a ZIP archive nested 1 levels deep, over the limit of 0" in message


@pytest.mark.parametrize("operation", OPERATIONS)
def test_archive_nested_one_level_too_deep_is_refused(operation: str, tmp_path: Path) -> None:
    message = refused(
        operation,
        nested(2),
        tmp_path,
        NestingError,
        "blob.unsafe.nesting",
        member="level2.zip",  # found while scanning level1.zip
        limits=Limits(max_nesting=1),
        limit="max_nesting",
        value=2,
        maximum=1,
    )
    assert "member 'level2.zip' is a ZIP archive nested 2 levels deep" in message


def test_default_max_nesting_is_three(tmp_path: Path) -> None:
    assert DEFAULT_LIMITS.max_nesting == 3
    blob = encode_zip_to_utf8_blob(nested(3))
    assert read_zip(decode_utf8_blob_to_zip(blob))["note.txt"] == b"n"
    refused(
        "encode",
        nested(4),
        tmp_path,
        NestingError,
        "blob.unsafe.nesting",
        member="level4.zip",
        limit="max_nesting",
        value=4,
        maximum=3,
    )


def test_archive_nested_within_the_limit_is_extracted_as_a_file(tmp_path: Path) -> None:
    archive = nested(1)
    extract_blob(b64(archive), tmp_path / "out", limits=Limits(max_nesting=1))
    inner = (tmp_path / "out" / "level1.zip").read_bytes()
    assert inner == read_zip(archive)["level1.zip"]
    assert read_zip(inner) == {"leaf.txt": b"leaf"}
    assert not (tmp_path / "out" / "leaf.txt").exists()  # never unpacked recursively
