"""Extracting an archive into a directory without ever writing outside it.

Every path is opened relative to a directory descriptor, one component at a time, with
``O_NOFOLLOW``: a symbolic link planted in the target (or created by a race) is refused,
never followed. Each file is written under a temporary name, verified (CRC-32 and, with
a manifest, SHA-256) and only then renamed into place, so a file that appears is whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from taskloop import progress
from taskloop.blob.errors import (
    ChecksumMismatchError,
    LinkMemberError,
    TargetExistsError,
)
from taskloop.blob.format import ManifestEntry
from taskloop.blob.members import check_member, run_parallel
from taskloop.blob.report import MemberAction, MemberReport, MemberStatus, Report
from taskloop.blob.safety import Budget, Limits, Located, locate_members
from taskloop.blob.source import ByteSource
from taskloop.blob.zipread import read_directory
from taskloop.errors import InputFileError
from taskloop.log import step

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


class _FdWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        return len(data)


def _open_dir(parent: int, name: str, *, create: bool, shown: str) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise LinkMemberError(
                f"cannot extract {shown!r}: {name!r} in the target is a symbolic link or not a "
                "directory; taskloop never follows links",
                member=shown,
            ) from None
        raise InputFileError(f"cannot create directory for {shown!r}: {exc.strerror}") from None


def _dos_mtime(dos_date: int, dos_time: int) -> float | None:
    try:
        parts = (
            1980 + (dos_date >> 9),
            (dos_date >> 5) & 0xF,
            dos_date & 0x1F,
            dos_time >> 11,
            (dos_time >> 5) & 0x3F,
            (dos_time & 0x1F) * 2,
            0,
            0,
            -1,
        )
        return time.mktime(parts)
    except (OverflowError, ValueError):
        return None


def _extract_one(
    src: ByteSource,
    member: Located,
    root: int,
    *,
    expected: ManifestEntry | None,
    limits: Limits,
    budget: Budget,
    overwrite: bool,
) -> MemberReport:
    entry = member.entry
    parts = entry.name.rstrip("/").split("/")
    fds: list[int] = []
    parent = root
    try:
        dirs = parts if entry.is_dir else parts[:-1]
        for part in dirs:
            parent = _open_dir(parent, part, create=True, shown=entry.name)
            fds.append(parent)
        report = MemberReport(
            name=entry.name,
            status=MemberStatus.INTACT,
            action=MemberAction.KEPT,
            size=entry.size,
            source="central directory",
            offset=entry.header_offset,
        )
        if entry.is_dir:
            return report
        final = parts[-1]
        _check_target(parent, final, entry.name, overwrite)
        tmp = f".{final[:100]}.taskloop-{secrets.token_hex(6)}.partial"
        fd = os.open(tmp, _NEW_FILE, 0o600, dir_fd=parent)
        try:
            check = check_member(
                src,
                entry.name,
                entry.method,
                entry.flags,
                member.data_offset,
                entry.compressed_size,
                entry.size,
                entry.crc32,
                limits=limits,
                budget=budget,
                sink=_FdWriter(fd),
            )
            if check.problem is not None:
                raise ChecksumMismatchError(
                    f"member {entry.name!r} is damaged ({check.problem}); not extracted",
                    member=entry.name,
                    kind="crc32",
                    expected=f"{entry.crc32:08x}",
                    actual=f"{check.crc32:08x}",
                    hint="`taskloop blob extract --repair` extracts the members that verify",
                )
            if expected is not None and expected.sha256 != check.sha256:
                raise ChecksumMismatchError(
                    f"member {entry.name!r}: SHA-256 {check.sha256} differs from the manifest's "
                    f"{expected.sha256}; not extracted",
                    member=entry.name,
                    kind="sha256",
                    expected=expected.sha256,
                    actual=check.sha256,
                )
            mode = 0o755 if entry.unix_mode & 0o111 else 0o644
            os.fchmod(fd, mode)
            mtime = _dos_mtime(entry.dos_date, entry.dos_time)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=parent)
            raise
        os.close(fd)
        os.rename(tmp, final, src_dir_fd=parent, dst_dir_fd=parent)
        report.actual_size = check.size
        report.crc32_actual = f"{check.crc32:08x}"
        report.sha256_actual = check.sha256
        report.verified_by = ["crc32", "sha256"] if expected is not None else ["crc32"]
        return report
    finally:
        for fd_ in fds:
            os.close(fd_)


def _check_target(parent: int, name: str, shown: str, overwrite: bool) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise LinkMemberError(
            f"cannot extract {shown!r}: the target already holds a symbolic link there",
            member=shown,
        )
    if not stat.S_ISREG(st.st_mode):
        raise TargetExistsError(f"cannot extract {shown!r}: something other than a file is there")
    if not overwrite:
        raise TargetExistsError(
            f"cannot extract {shown!r}: the file already exists",
            hint="pass --overwrite to replace existing files",
        )


def extract_archive(
    src: ByteSource,
    dest: str | Path,
    report: Report,
    *,
    manifest: Sequence[ManifestEntry] | None,
    limits: Limits,
    overwrite: bool = False,
    workers: int | None = None,
) -> None:
    """Extract every member of a (checked) archive into ``dest``, filling ``report``."""
    with step("extract", in_bytes=src.size) as info:
        _extract_all(src, Path(dest), report, manifest, limits, overwrite, workers)
        info["members"] = len(report.members)


def _extract_all(
    src: ByteSource,
    dest: Path,
    report: Report,
    manifest: Sequence[ManifestEntry] | None,
    limits: Limits,
    overwrite: bool,
    workers: int | None,
) -> None:
    if not hasattr(os, "O_NOFOLLOW") or os.open not in os.supports_dir_fd:
        raise InputFileError("safe extraction needs a POSIX system (openat, O_NOFOLLOW)")
    directory = read_directory(src, max_members=limits.max_members)
    located = locate_members(src, directory, limits)
    expected: Mapping[str, ManifestEntry] = {m.name: m for m in manifest or ()}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root = os.open(dest, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise InputFileError(f"cannot use {str(dest)!r} as the target: {exc.strerror}") from None
    budget = Budget(limits)
    try:
        # Directories first, so parallel file jobs never race to create the same one.
        for member in located:
            if member.entry.is_dir:
                report.members.append(
                    _extract_one(
                        src,
                        member,
                        root,
                        expected=None,
                        limits=limits,
                        budget=budget,
                        overwrite=overwrite,
                    )
                )
        files = [m for m in located if not m.entry.is_dir]
        progress.start("extract", sum(m.entry.size for m in files))

        def counted(report: MemberReport) -> MemberReport:
            progress.advance(report.actual_size or 0)
            return report

        jobs = [
            (
                lambda m=m: counted(
                    _extract_one(
                        src,
                        m,
                        root,
                        expected=expected.get(m.entry.name),
                        limits=limits,
                        budget=budget,
                        overwrite=overwrite,
                    )
                )
            )
            for m in files
        ]
        report.members.extend(run_parallel(jobs, [m.entry.size for m in files], workers))
    finally:
        os.close(root)
    report.output = str(dest)
