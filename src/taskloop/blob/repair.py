"""Finding every member that can be trusted, and rebuilding an archive from them.

``analyze`` reads an archive that may be damaged (bit flips, truncation anywhere, a lost
or corrupt central directory, junk before or after) and decides, member by member,
whether its bytes verify. It first trusts the central directory; for whatever that
cannot account for it scans for local file headers (data descriptors with and without
signature, zip64 sizes) and inflates what it finds. A member is only ever called intact
or recovered when its CRC-32 matches and, where a manifest is available, its SHA-256
too. ``rebuild`` then writes a clean archive from the verified members by copying their
compressed bytes, never inflating and deflating them again.
"""

from __future__ import annotations

import fnmatch
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from taskloop.blob.errors import (
    ArchiveError,
    BlobError,
    CriticalMemberError,
    DamagedArchiveError,
    UnsafeArchiveError,
    UnsupportedMethodError,
)
from taskloop.blob.format import ManifestEntry
from taskloop.blob.members import MemberCheck, Writer, check_located, check_member
from taskloop.blob.report import MemberAction, MemberReport, MemberStatus, Outcome, Report
from taskloop.blob.safety import Budget, Limits, Located, check_name, locate_members
from taskloop.blob.source import ByteSource
from taskloop.blob.zipread import (
    CENTRAL_SIG,
    DESCRIPTOR_SIG,
    FLAG_DESCRIPTOR,
    LOCAL_SIG,
    STORED,
    SUPPORTED_METHODS,
    LocalHeader,
    ZipDirectory,
    ZipEntry,
    check_method,
    decode_name,
    parse_local_header,
    read_directory,
)
from taskloop.blob.zipwrite import RawZipWriter
from taskloop.log import step

SCAN_CHUNK = 16 << 20
MAX_DESCRIPTOR_CANDIDATES = 64


@dataclass(slots=True)
class Found:
    """A member located in the archive and what inflating it showed."""

    name: str
    raw_name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    create_system: int
    external_attr: int
    header_offset: int
    data_offset: int
    compressed_size: int | None
    size: int | None
    crc32: int | None  # what the archive itself claims
    check: MemberCheck | None
    source: str
    span_end: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.check is not None and self.check.ok


@dataclass(slots=True)
class Analysis:
    """Per-member findings; ``found`` is keyed by member name."""

    found: dict[str, Found] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # names in archive order
    directory_ok: bool = False
    problems: list[str] = field(default_factory=list)  # damage
    notes: list[str] = field(default_factory=list)  # oddities that are not damage


def _from_entry(entry: ZipEntry, data_offset: int, check: MemberCheck | None, source: str) -> Found:
    return Found(
        name=entry.name,
        raw_name=entry.raw_name,
        flags=entry.flags,
        method=entry.method,
        dos_time=entry.dos_time,
        dos_date=entry.dos_date,
        create_system=entry.create_system,
        external_attr=entry.external_attr,
        header_offset=entry.header_offset,
        data_offset=data_offset,
        compressed_size=entry.compressed_size,
        size=entry.size,
        crc32=entry.crc32,
        check=check,
        source=source,
        span_end=data_offset + entry.compressed_size,
    )


def analyze(
    src: ByteSource,
    *,
    manifest: Sequence[ManifestEntry] | None,
    manifest_trusted: bool,
    limits: Limits,
    workers: int | None = None,
) -> Analysis:
    """Locate and check every member, trusting the central directory first.

    Args:
        manifest: the blob's manifest, if any. When it is trusted only listed members
            count; an untrusted one (its seal failed) may have lost or garbled lines, so
            every member the archive holds is considered.
        manifest_trusted: the manifest's seal verified. A structure that breaks a safety
            rule is then damage (the encoder refused unsafe archives), not an attack, and
            salvage goes on; without a trusted manifest it raises.

    Raises:
        UnsafeArchiveError: a hostile structure and no trusted manifest; or limits crossed.
    """
    result = Analysis()
    listed = {m.name for m in manifest} if manifest is not None and manifest_trusted else None
    budget = Budget(limits)
    directory = _read_directory(src, limits, result)
    cd_entries: dict[str, ZipEntry] = {}
    if directory is not None:
        cd_entries = {e.name: e for e in directory.entries}
        _check_directory(src, directory, listed, manifest_trusted, limits, workers, budget, result)
    wanted = set(listed) if listed is not None else set(cd_entries)
    if not result.directory_ok or any(
        name not in result.found or not result.found[name].ok for name in wanted
    ):
        with step("scan", in_bytes=src.size) as info:
            _scan(src, listed, cd_entries, limits, budget, result)
            info["found"] = sum(1 for f in result.found.values() if f.ok)
    if listed is None:
        # A member the central directory lists but nothing located is missing, not unmentioned.
        result.order.extend(name for name in cd_entries if name not in result.found)
    return result


def _read_directory(src: ByteSource, limits: Limits, result: Analysis) -> ZipDirectory | None:
    try:
        return read_directory(src, max_members=limits.max_members, search_all=True)
    except UnsafeArchiveError:
        raise
    except ArchiveError as exc:
        result.problems.append(f"central directory unusable: {exc}; scanning local headers")
        return None


def _check_directory(
    src: ByteSource,
    directory: ZipDirectory,
    listed: set[str] | None,
    trusted: bool,
    limits: Limits,
    workers: int | None,
    budget: Budget,
    result: Analysis,
) -> None:
    # A self-extractor stub or trailing bytes are legal ZIP; they are noted, not damage.
    if directory.prefix:
        result.notes.append(f"{directory.prefix} bytes of junk before the archive")
    if directory.end < src.size:
        result.notes.append(f"{src.size - directory.end} bytes of junk after the archive")
    located: Sequence[Located] | None
    try:
        located = locate_members(src, directory, limits)
    except UnsafeArchiveError as exc:
        if not trusted:
            raise
        result.problems.append(f"directory breaks a safety rule ({exc}); treated as damage")
        located = None
    except ArchiveError as exc:
        result.problems.append(f"directory and local headers disagree ({exc})")
        located = None
    if located is not None and listed is not None:
        extra = [m.entry.name for m in located if m.entry.name not in listed]
        if extra:
            result.problems.append(
                f"{len(extra)} directory entries are not in the manifest (e.g. {extra[0]!r}); "
                "ignored"
            )
            located = tuple(m for m in located if m.entry.name in listed)
    if located is None:
        located = _locate_leniently(src, directory, listed, limits, result)
    else:
        result.directory_ok = True
    supported: list[Located] = []
    for member in located:
        entry = member.entry
        result.order.append(entry.name)
        try:
            check_method(entry.name, entry.flags, entry.method)
        except UnsupportedMethodError as exc:
            found = _from_entry(entry, member.data_offset, None, "central directory")
            found.detail = str(exc)
            result.found[entry.name] = found
            continue
        supported.append(member)
    checks, _ = check_located(src, supported, limits=limits, budget=budget, workers=workers)
    for member, check in zip(supported, checks, strict=True):
        result.found[member.entry.name] = _from_entry(
            member.entry, member.data_offset, check, "central directory"
        )


def _locate_leniently(
    src: ByteSource,
    directory: ZipDirectory,
    listed: set[str] | None,
    limits: Limits,
    result: Analysis,
) -> list[Located]:
    """Entries whose local header is where the directory says and names the same member."""
    out: list[Located] = []
    for entry in directory.entries:
        if listed is not None and entry.name not in listed:
            continue
        if listed is None:
            check_name(entry.name, len(entry.raw_name), limits)
        local = parse_local_header(src, entry.header_offset)
        if local is None or local.raw_name != entry.raw_name or local.method != entry.method:
            continue
        out.append(Located(entry, local.data_offset))
    return out


def _claimed(result: Analysis) -> list[tuple[int, int]]:
    spans = [
        (f.header_offset, f.span_end)
        for f in result.found.values()
        if f.ok or f.compressed_size is not None
    ]
    return sorted(spans)


def find_all(src: ByteSource, pattern: bytes) -> Iterator[int]:
    """Offsets of ``pattern`` in ``src``, in order, reading at most SCAN_CHUNK at a time."""
    overlap = len(pattern) - 1
    pos = 0
    while pos < src.size:
        block = bytes(src.read_at(pos, SCAN_CHUNK + overlap))
        idx = block.find(pattern)
        while idx >= 0:
            if idx < SCAN_CHUNK or pos + SCAN_CHUNK >= src.size:
                yield pos + idx
            idx = block.find(pattern, idx + 1)
        pos += SCAN_CHUNK


def _scan(
    src: ByteSource,
    listed: set[str] | None,
    cd_entries: dict[str, ZipEntry],
    limits: Limits,
    budget: Budget,
    result: Analysis,
) -> None:
    claimed = _claimed(result)
    ci = 0
    skip_until = 0  # end of the last member this scan verified
    for pos in find_all(src, LOCAL_SIG):
        if pos < skip_until:
            continue
        while ci < len(claimed) and claimed[ci][1] <= pos:
            ci += 1
        if ci < len(claimed) and claimed[ci][0] <= pos < claimed[ci][1]:
            continue
        local = parse_local_header(src, pos)
        if local is None or not local.raw_name or len(local.raw_name) > 4096:
            continue
        if local.method not in SUPPORTED_METHODS:
            continue
        try:
            name = decode_name(local.raw_name, local.flags)
        except BlobError:
            continue
        if listed is not None and name not in listed:
            continue
        previous = result.found.get(name)
        if previous is not None and previous.ok:
            continue
        if listed is None:
            check_name(name, len(local.raw_name), limits)
        found = _salvage_one(src, name, local, cd_entries.get(name), limits, budget)
        if previous is None:
            result.order.append(name)
        if previous is None or found.ok:
            result.found[name] = found
        if found.ok:
            skip_until = found.span_end


def _salvage_one(
    src: ByteSource,
    name: str,
    local: LocalHeader,
    entry: ZipEntry | None,
    limits: Limits,
    budget: Budget,
) -> Found:
    """Inflate one member found by scanning."""
    found = Found(
        name=name,
        raw_name=local.raw_name,
        flags=local.flags,
        method=local.method,
        dos_time=entry.dos_time if entry else 0,
        dos_date=entry.dos_date if entry else 0,
        create_system=entry.create_system if entry else 3,
        external_attr=entry.external_attr if entry else 0,
        header_offset=local.offset,
        data_offset=local.data_offset,
        compressed_size=None,
        size=None,
        crc32=None,
        check=None,
        source="local header scan",
        span_end=local.data_offset,
    )
    if entry is None:
        raw = bytes(src.read_at(local.offset + 10, 4))
        if len(raw) == 4:
            found.dos_time, found.dos_date = struct.unpack("<HH", raw)
        found.external_attr = (0o40755 if name.endswith("/") else 0o100644) << 16
    if entry is not None and entry.method == local.method:
        sizes: tuple[int | None, int | None, int | None] = (
            entry.compressed_size,
            entry.size,
            entry.crc32,
        )
    elif not local.flags & FLAG_DESCRIPTOR:
        sizes = (local.compressed_size, local.size, local.crc32)
    else:
        sizes = (None, None, None)
    csize, size, crc = sizes
    if csize is None and local.method == STORED:
        return _salvage_stored_descriptor(src, found, limits, budget)
    if csize is not None and local.data_offset + csize > src.size:
        found.detail = f"data cut short: {src.size - local.data_offset} of {csize} bytes present"
        found.compressed_size, found.size, found.crc32 = csize, size, crc
        return found
    check = _check(src, found, csize, size, crc, limits, budget)
    found.check = check
    found.compressed_size = csize if csize is not None else check.consumed
    found.size = size if size is not None else check.size
    found.crc32 = crc
    found.span_end = local.data_offset + found.compressed_size
    if csize is None and check.problem is None:
        descriptor = _match_descriptor(src, found.span_end, check, local.extra)
        if descriptor is None:
            found.check = MemberCheck(
                name,
                check.size,
                check.crc32,
                check.sha256,
                "data descriptor missing or does not match the data",
                check.consumed,
            )
        else:
            found.crc32 = check.crc32
            found.span_end += descriptor
    return found


def _check(
    src: ByteSource,
    found: Found,
    csize: int | None,
    size: int | None,
    crc: int | None,
    limits: Limits,
    budget: Budget,
) -> MemberCheck:
    return check_member(
        src,
        found.name,
        found.method,
        found.flags,
        found.data_offset,
        csize,
        size,
        crc,
        limits=limits,
        budget=budget,
    )


def _descriptor_variants(zip64: bool) -> list[tuple[bool, int]]:
    """(has signature, size field width) in the order they are worth trying."""
    widths = [8, 4] if zip64 else [4, 8]
    return [(sig, w) for sig in (True, False) for w in widths]


def _match_descriptor(src: ByteSource, pos: int, check: MemberCheck, extra: bytes) -> int | None:
    """Length of a data descriptor at ``pos`` that agrees with the data, or None."""
    zip64 = b"\x01\x00" in extra[:2]
    for has_sig, width in _descriptor_variants(zip64):
        length = (4 if has_sig else 0) + 4 + 2 * width
        raw = bytes(src.read_at(pos, length))
        if len(raw) < length:
            continue
        if has_sig:
            if raw[:4] != DESCRIPTOR_SIG:
                continue
            raw = raw[4:]
        fmt = "<IQQ" if width == 8 else "<III"
        crc, csize, usize = struct.unpack(fmt, raw)
        if crc == check.crc32 and csize == check.consumed and usize == check.size:
            return length
    return None


def _salvage_stored_descriptor(
    src: ByteSource, found: Found, limits: Limits, budget: Budget
) -> Found:
    """A stored member with its sizes only in a trailing descriptor: try each place it may end."""
    start = found.data_offset
    candidates: list[tuple[int, int]] = []  # (data end, descriptor length)
    for sig in (DESCRIPTOR_SIG, LOCAL_SIG, CENTRAL_SIG):
        count = 0
        for pos in find_all(src, sig):
            if pos < start:
                continue
            if sig == DESCRIPTOR_SIG:
                candidates.extend([(pos, 16), (pos, 24)])
            else:
                candidates.extend([(pos - 12, 12), (pos - 20, 20)])
            count += 1
            if count >= MAX_DESCRIPTOR_CANDIDATES:
                break
    # The input may end right after the descriptor (cut where the directory began).
    candidates.extend([(src.size - 12, 12), (src.size - 20, 20)])
    for end, length in sorted(set(candidates)):
        if end < start:
            continue
        raw = bytes(src.read_at(end, length))
        body = raw[4:] if length in (16, 24) and raw[:4] == DESCRIPTOR_SIG else raw
        if len(body) not in (12, 20):
            continue
        fmt = "<III" if len(body) == 12 else "<IQQ"
        crc, csize, usize = struct.unpack(fmt, body)
        if csize != end - start or usize != csize:
            continue
        check = _check(src, found, csize, usize, crc, limits, budget)
        if check.ok:
            found.check = check
            found.compressed_size = found.size = csize
            found.crc32 = crc
            found.span_end = end + length
            return found
    found.detail = "stored member whose end could not be found (no matching data descriptor)"
    return found


# --- turning findings into a report ------------------------------------------------------


def is_critical(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _member_report(
    name: str,
    found: Found | None,
    expected: ManifestEntry | None,
    manifest_trusted: bool,
    critical: bool,
) -> MemberReport:
    report = MemberReport(name=name, status=MemberStatus.MISSING, critical=critical)
    if expected is not None:
        report.size = expected.size
        report.crc32_expected = f"{expected.crc32:08x}"
        report.sha256_expected = expected.sha256
        report.source = "manifest"
    elif found is not None:
        report.size = found.size
        report.crc32_expected = f"{found.crc32:08x}" if found.crc32 is not None else None
    if found is None:
        report.detail = "not found in the archive"
        if expected is not None and expected.is_dir:
            report.status = MemberStatus.RECOVERED
            report.detail = "directory entry recreated from the manifest"
            report.verified_by = ["manifest"]
        return report
    report.source = found.source
    report.offset = found.header_offset
    check = found.check
    if check is None:
        report.status = MemberStatus.DAMAGED
        report.detail = found.detail or "could not be read"
        return report
    report.actual_size = check.size  # for a broken stream: how far inflating got
    if check.complete:  # hashes of a stream that broke off would describe nothing
        report.crc32_actual = f"{check.crc32:08x}"
        report.sha256_actual = check.sha256
    if check.problem is not None:
        report.status = MemberStatus.DAMAGED
        report.detail = check.problem
        return report
    verified_by = ["crc32"]
    if expected is not None:
        if expected.crc32 != check.crc32 or expected.size != check.size:
            if manifest_trusted:
                report.status = MemberStatus.DAMAGED
                report.detail = (
                    f"CRC-32 {check.crc32:08x} / size {check.size} differ from the manifest "
                    f"({expected.crc32:08x} / {expected.size})"
                )
                return report
        elif expected.sha256 == check.sha256:
            verified_by.append("sha256")
        elif manifest_trusted:
            report.status = MemberStatus.DAMAGED
            report.detail = f"SHA-256 {check.sha256} differs from the manifest's {expected.sha256}"
            return report
    report.verified_by = verified_by
    trusted_fully = expected is None or "sha256" in verified_by
    if found.source == "central directory" and trusted_fully:
        report.status = MemberStatus.INTACT
    else:
        report.status = MemberStatus.RECOVERED
        if not trusted_fully:
            report.detail = "manifest entry damaged; verified by CRC-32 only"
        else:
            report.detail = "found by scanning local headers"
    return report


def build_report(
    analysis: Analysis,
    report: Report,
    *,
    manifest: Sequence[ManifestEntry] | None,
    manifest_trusted: bool,
    critical: Sequence[str] = (),
) -> None:
    """Fill ``report.members`` from an analysis (in manifest order when there is one).

    With an untrusted manifest, a listed name that is not in the archive is matched by
    SHA-256 to an unlisted member (the manifest line's name may be what was damaged), and
    members the manifest does not list are reported after the listed ones.
    """
    reported: set[str] = set()
    if manifest is not None:
        listed = {entry.name for entry in manifest}
        unlisted = [name for name in analysis.order if name not in listed]
        for entry in manifest:
            name, found = entry.name, analysis.found.get(entry.name)
            if found is None and not manifest_trusted:
                match = next(
                    (n for n in unlisted if _same_content(analysis.found.get(n), entry)), None
                )
                if match is not None:
                    # Same bytes, other name: one of the two names is damaged (ZIP's CRC-32
                    # does not cover names). Keep the archive's, and say so.
                    unlisted.remove(match)
                    name, found = match, analysis.found[match]
            member = _member_report(
                name, found, entry, manifest_trusted, entry.critical or is_critical(name, critical)
            )
            if found is not None and found.name != entry.name:
                member.detail = (
                    f"named {entry.name!r} in the damaged manifest and {found.name!r} in the "
                    f"archive; {member.detail}"
                )
            reported.add(name)
            report.members.append(member)
    if manifest is None or not manifest_trusted:
        for name in analysis.order:
            if name not in reported:
                reported.add(name)
                report.members.append(
                    _member_report(
                        name, analysis.found.get(name), None, False, is_critical(name, critical)
                    )
                )
    report.problems.extend(analysis.problems)
    report.notes.extend(analysis.notes)


def _same_content(found: Found | None, entry: ManifestEntry) -> bool:
    check = found.check if found is not None else None
    return check is not None and check.ok and check.sha256 == entry.sha256


def decide(report: Report, *, template: bytes | None, writing: bool) -> None:
    """Set each member's action and the outcome.

    Raises:
        CriticalMemberError: a critical member is lost (writing only; nothing is written).
        DamagedArchiveError: nothing at all could be recovered (writing only).
    """
    lost = [m for m in report.members if not m.verified]
    for m in report.members:
        if not writing:
            m.action = MemberAction.NONE
        elif m.verified:
            m.action = MemberAction.KEPT
        elif m.critical:
            m.action = MemberAction.FAILED
        else:
            m.action = MemberAction.REPLACED if template is not None else MemberAction.SKIPPED
    altered = bool(report.problems) or any(m.status != MemberStatus.INTACT for m in report.members)
    if not writing:
        report.outcome = Outcome.DAMAGED if altered else Outcome.INTACT
        return
    failed = [m for m in lost if m.critical]
    if failed:
        report.outcome = Outcome.FAILED
        names = ", ".join(repr(m.name) for m in failed[:5])
        raise CriticalMemberError(
            f"critical member(s) {names} could not be recovered; nothing was written",
            report=report,
            hint="see the report for what was found; a critical member has no substitute",
        )
    if not report.members and report.problems:
        report.outcome = Outcome.FAILED
        raise DamagedArchiveError(
            "no ZIP members could be found in the input; nothing was written",
            report=report,
            hint="is this a ZIP archive at all? `taskloop blob inspect` shows what the input is",
        )
    if report.members and len(lost) == len(report.members) and template is None:
        report.outcome = Outcome.FAILED
        raise DamagedArchiveError(
            f"none of the {len(report.members)} members could be recovered; nothing was written",
            report=report,
        )
    if lost:
        report.outcome = Outcome.REPAIRED_WITH_LOSSES
    elif altered:
        report.outcome = Outcome.REPAIRED
    else:
        report.outcome = Outcome.INTACT


def rebuild(
    src: ByteSource,
    analysis: Analysis,
    report: Report,
    out: Writer,
    *,
    template: bytes | None,
) -> None:
    """Write a clean archive of the kept and replaced members, in report order."""
    writer = RawZipWriter(out)
    for m in report.members:
        found = analysis.found.get(m.name)
        raw_name = m.name.encode("utf-8")
        if m.action == MemberAction.KEPT:
            if found is None:  # a directory recreated from the manifest
                writer.add_raw(
                    raw_name=raw_name,
                    flags=0x0800,
                    method=STORED,
                    dos_time=0,
                    dos_date=(1 << 5) | 1,
                    crc=0,
                    compressed_size=0,
                    size=0,
                    data=[],
                    external_attr=0o40755 << 16,
                )
                continue
            assert found.check is not None and found.compressed_size is not None
            flags = found.flags & ~FLAG_DESCRIPTOR
            if found.raw_name != raw_name:
                flags |= 0x0800
            writer.add_raw(
                raw_name=raw_name,
                flags=flags,
                method=found.method,
                dos_time=found.dos_time,
                dos_date=found.dos_date,
                crc=found.check.crc32,
                compressed_size=found.compressed_size,
                size=found.check.size,
                data=_copy(src, found.data_offset, found.compressed_size),
                create_system=found.create_system,
                external_attr=found.external_attr,
            )
        elif m.action == MemberAction.REPLACED:
            assert template is not None
            writer.add_bytes(raw_name, template)
    writer.close()


def _copy(src: ByteSource, offset: int, length: int) -> Iterator[bytes | memoryview]:
    end = offset + length
    while offset < end:
        piece = src.read_at(offset, min(SCAN_CHUNK, end - offset))
        if not piece:
            raise DamagedArchiveError(f"archive ends inside data at offset {offset}", report=None)
        offset += len(piece)
        yield piece
