"""Limits and structural checks against hostile archives.

Checks here read only the directory and the local headers; what can only be known while
inflating (real sizes, real ratios, nested archives) is enforced chunk by chunk in
``members.py`` with the same :class:`Limits`.
"""

from __future__ import annotations

import itertools
import re
import stat
import threading
import unicodedata
from dataclasses import dataclass, fields

from taskloop.blob.errors import (
    BadNameError,
    DuplicateNameError,
    LimitExceededError,
    LinkMemberError,
    OverlapError,
    PathTraversalError,
)
from taskloop.blob.source import ByteSource
from taskloop.blob.zipread import ZipDirectory, ZipEntry, read_local_header

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_REPARSE_POINT = 0x400


@dataclass(frozen=True, slots=True)
class Limits:
    """Safety limits; the defaults admit any sane task archive and refuse known bombs.

    Attributes:
        max_total_size: uncompressed bytes in the whole archive, nested archives included.
        max_member_size: uncompressed bytes in one member.
        max_ratio: uncompressed/compressed size of one member, checked once the member has
            produced ``ratio_grace`` bytes (small members of zeros legitimately reach 1000x).
        ratio_grace: see ``max_ratio``.
        max_members: entries in one archive's central directory.
        max_nesting: archives inside archives (a top-level archive is depth 0).
        max_path_depth: components in one member path.
        max_name_length: bytes in one member name.
    """

    max_total_size: int = 8 * GiB
    max_member_size: int = 4 * GiB
    max_ratio: float = 100.0
    ratio_grace: int = 1 * MiB
    max_members: int = 100_000
    max_nesting: int = 3
    max_path_depth: int = 64
    max_name_length: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"limit {f.name} must be >= 0, got {value}")


DEFAULT_LIMITS = Limits()


class Budget:
    """Uncompressed bytes left for one archive and everything nested in it (thread-safe)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.used = 0
        self._lock = threading.Lock()

    def spend(self, n: int, member: str) -> None:
        with self._lock:
            self.used += n
            used = self.used
        if used > self.limits.max_total_size:
            raise LimitExceededError(
                f"archive inflates to more than {self.limits.max_total_size} bytes in total "
                f"(reached while inflating {member!r})",
                limit="max_total_size",
                value=used,
                maximum=self.limits.max_total_size,
                member=member,
                hint="raise --max-total-size if the archive is trusted",
            )


@dataclass(frozen=True, slots=True)
class Located:
    """A member and where its data starts, after every structural check passed."""

    entry: ZipEntry
    data_offset: int

    @property
    def data_end(self) -> int:
        return self.data_offset + self.entry.compressed_size


def check_name(name: str, raw_length: int, limits: Limits) -> None:
    """Refuse member names that could escape the target directory or confuse tools."""
    shown = repr(name)
    if not name:
        raise BadNameError("member with an empty name", member=name)
    if raw_length > limits.max_name_length:
        raise BadNameError(
            f"member name of {raw_length} bytes is longer than {limits.max_name_length}: "
            f"{name[:60]!r}...",
            member=name,
        )
    for i, ch in enumerate(name):
        if unicodedata.category(ch) == "Cc":
            what = "NUL" if ch == "\0" else f"control character U+{ord(ch):04X}"
            raise BadNameError(f"member name {shown} contains {what} at character {i}", member=name)
    if "\\" in name:
        raise PathTraversalError(
            f"member name {shown} contains a backslash, a path separator on Windows "
            "(ZIP names use '/')",
            member=name,
        )
    if name.startswith("/"):
        raise PathTraversalError(f"member name {shown} is an absolute path", member=name)
    if _DRIVE.match(name):
        raise PathTraversalError(f"member name {shown} starts with a drive letter", member=name)
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    for part in parts:
        if part == "..":
            raise PathTraversalError(
                f"member name {shown} has a '..' component that climbs out of the target",
                member=name,
            )
        if part in ("", "."):
            raise BadNameError(
                f"member name {shown} has an empty or '.' path component", member=name
            )
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            raise BadNameError(
                f"member name {shown} has a component longer than 255 bytes", member=name
            )
    if len(parts) > limits.max_path_depth:
        raise LimitExceededError(
            f"member name {name[:60]!r}... is {len(parts)} directories deep, over the limit "
            f"of {limits.max_path_depth}",
            limit="max_path_depth",
            value=len(parts),
            maximum=limits.max_path_depth,
            member=name,
        )


def check_entry_type(entry: ZipEntry) -> None:
    """Only regular files and directories: no symlinks, devices, FIFOs or sockets."""
    mode = entry.unix_mode
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise LinkMemberError(
            f"member {entry.name!r} is a symbolic link; taskloop never extracts links",
            member=entry.name,
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise LinkMemberError(
            f"member {entry.name!r} is a special file (mode {oct(kind)}), not a regular file",
            member=entry.name,
        )
    if entry.create_system == 0 and entry.external_attr & _WINDOWS_REPARSE_POINT:
        raise LinkMemberError(
            f"member {entry.name!r} is a Windows reparse point (link or junction)",
            member=entry.name,
        )


def check_declared_sizes(entry: ZipEntry, limits: Limits) -> None:
    """Refuse before inflating when the directory itself admits a bomb."""
    if entry.size > limits.max_member_size:
        raise LimitExceededError(
            f"member {entry.name!r} declares {entry.size} bytes uncompressed, over the "
            f"per-member limit of {limits.max_member_size}",
            limit="max_member_size",
            value=entry.size,
            maximum=limits.max_member_size,
            member=entry.name,
            hint="raise --max-member-size if the archive is trusted",
        )
    ratio = entry.size / max(entry.compressed_size, 1)
    if entry.size > limits.ratio_grace and ratio > limits.max_ratio:
        raise LimitExceededError(
            f"member {entry.name!r} declares a compression ratio of {ratio:.0f}:1 "
            f"({entry.compressed_size} -> {entry.size} bytes), over the limit of "
            f"{limits.max_ratio:g}:1",
            limit="max_ratio",
            value=ratio,
            maximum=limits.max_ratio,
            member=entry.name,
            hint="raise --max-ratio if the archive is trusted",
        )


def _collision_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.rstrip("/")).casefold()


def check_entries(entries: tuple[ZipEntry, ...], limits: Limits) -> None:
    """Names, types, duplicates and declared sizes of every entry."""
    seen: dict[str, str] = {}
    files: set[str] = set()
    dirs: set[str] = set()
    total = 0
    for entry in entries:
        check_name(entry.name, len(entry.raw_name), limits)
        check_entry_type(entry)
        check_declared_sizes(entry, limits)
        key = _collision_key(entry.name)
        if key in seen:
            first = seen[key]
            if first == entry.name:
                message = f"member name {entry.name!r} appears twice"
            elif first.rstrip("/") == entry.name.rstrip("/"):
                message = (
                    f"path {entry.name.rstrip('/')!r} is used both as a file and as a directory"
                )
            else:
                message = (
                    f"member names {first!r} and {entry.name!r} differ only in case or "
                    "Unicode normalisation, so they collide on most file systems"
                )
            raise DuplicateNameError(message, member=entry.name)
        seen[key] = entry.name
        (dirs if entry.is_dir else files).add(key)
        parts = key.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        total += entry.size
    clash = files & dirs
    if clash:
        name = sorted(clash)[0]
        raise DuplicateNameError(
            f"path {name!r} is used both as a file and as a directory", member=name
        )
    if total > limits.max_total_size:
        raise LimitExceededError(
            f"archive declares {total} bytes uncompressed in total, over the limit of "
            f"{limits.max_total_size}",
            limit="max_total_size",
            value=total,
            maximum=limits.max_total_size,
            hint="raise --max-total-size if the archive is trusted",
        )


def locate_members(src: ByteSource, directory: ZipDirectory, limits: Limits) -> tuple[Located, ...]:
    """Run every structural check and return where each member's data lies.

    Raises:
        UnsafeArchiveError (a subclass): names, links, duplicates, sizes, overlapping data.
        ZipStructureError: a local header is missing or disagrees with the directory.
    """
    check_entries(directory.entries, limits)
    # Entries sharing one local header are the simplest overlap bomb; say so before the
    # local header's name check reports it as a mere name mismatch.
    first_at: dict[int, ZipEntry] = {}
    for entry in directory.entries:
        other = first_at.setdefault(entry.header_offset, entry)
        if other is not entry:
            raise OverlapError(
                f"members {other.name!r} and {entry.name!r} share the local header at offset "
                f"{entry.header_offset}; overlapping entries are how 'overlap' zip bombs work",
                member=entry.name,
            )
    located = [
        Located(entry, read_local_header(src, entry).data_offset) for entry in directory.entries
    ]
    ordered = sorted(located, key=lambda m: m.entry.header_offset)
    for before, after in itertools.pairwise(ordered):
        if after.entry.header_offset < before.data_end:
            raise OverlapError(
                f"members {before.entry.name!r} and {after.entry.name!r} overlap: "
                f"{after.entry.name!r} starts at offset {after.entry.header_offset}, inside "
                f"the data of {before.entry.name!r} (offsets {before.entry.header_offset}-"
                f"{before.data_end}); overlapping entries are how 'overlap' zip bombs work",
                member=after.entry.name,
            )
    if ordered and ordered[-1].data_end > directory.cd_offset:
        last = ordered[-1].entry.name
        raise OverlapError(
            f"the data of member {last!r} runs into the central directory at offset "
            f"{directory.cd_offset}",
            member=last,
        )
    return tuple(located)
