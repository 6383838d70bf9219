"""Encode, decode, verify, repair and inspect blobs, in memory or file to file.

Every operation streams: text is read and written in chunks of a few MiB, archives are
read with ``pread``, so the file-to-file functions work in bounded memory whatever the
size. The in-memory functions use the same machinery over a buffer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskloop import __version__, progress
from taskloop.blob.b64 import (
    STANDARD,
    Base64Encoder,
    encode_chunk_size,
    encoded_length,
)
from taskloop.blob.crypto import (
    DEFAULT_CHUNK_SIZE,
    SCHEME,
    ChunkEncryptor,
    Keys,
    Sealing,
    ciphertext_size,
    new_sealing,
    seal_manifest,
    wrap_for,
)
from taskloop.blob.errors import (
    ChecksumMismatchError,
)
from taskloop.blob.extract import extract_archive
from taskloop.blob.files import (
    BlobInput,
    Collect,
    Scratch,
    atomic_output,
    atomic_path,
    open_source,
    open_text,
)
from taskloop.blob.format import (
    END_LINE,
    ArchiveInfo,
    BlobHeader,
    EncryptionInfo,
    ManifestEntry,
    PayloadInfo,
    render_header,
    render_sealed_manifest,
)
from taskloop.blob.members import MemberCheck, Writer, check_located
from taskloop.blob.payload import (
    Payload,
    as_keys,
    at_magic,
    read_header,
    read_payload,
    start_reading,
    unseal,
)
from taskloop.blob.repair import Analysis, analyze, build_report, decide, is_critical, rebuild
from taskloop.blob.report import MemberReport, MemberStatus, Outcome, Report
from taskloop.blob.safety import DEFAULT_LIMITS, Limits, locate_members
from taskloop.blob.source import ByteSource, FileSource, MemorySource
from taskloop.blob.zipread import read_directory
from taskloop.errors import InputFileError
from taskloop.log import step

DEFAULT_CRITICAL = ("manifest.json",)
DEFAULT_WRAP = 76
PAYLOAD_CHUNK = 8 << 20
HASH_CHUNK = 1 << 20
_END_SEARCH = b"\n" + END_LINE


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What ``inspect`` shows: the header and, when readable, the manifest."""

    kind: str
    header: BlobHeader | None
    input_size: int
    manifest_readable: bool
    members: tuple[ManifestEntry, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        header = self.header
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "header": header.header_json() if header else None,
            "seal_ok": header.seal_ok if header else None,
            "manifest_readable": self.manifest_readable,
            "members": [m.to_json() for m in self.members],
            "note": self.note,
        }


# --- encode -------------------------------------------------------------------------------


def _sha256_of(src: ByteSource) -> str:
    h = hashlib.sha256()
    if isinstance(src, MemorySource):
        h.update(src.read_at(0, src.size))
    else:
        for pos in range(0, src.size, HASH_CHUNK):
            h.update(src.read_at(pos, HASH_CHUNK))
    return h.hexdigest()


def _archive_chunks(src: ByteSource, size: int) -> Iterator[bytes | memoryview]:
    for pos in range(0, src.size, size):
        yield src.read_at(pos, size)


def _analyse_for_encode(
    src: ByteSource,
    *,
    critical: Sequence[str],
    limits: Limits,
    workers: int | None,
    extra: Sequence[Callable[[], object]] = (),
) -> tuple[ArchiveInfo, tuple[ManifestEntry, ...], list[object]]:
    """Check the archive the way ``verify`` will, and describe it for the manifest."""
    directory = read_directory(src, max_members=limits.max_members)
    located = locate_members(src, directory, limits)
    checks, extras = check_located(
        src, located, limits=limits, workers=workers, extra=[lambda: _sha256_of(src), *extra]
    )
    members: list[ManifestEntry] = []
    for member, check in zip(located, checks, strict=True):
        entry = member.entry
        if check.problem is not None:
            raise _damage_error(
                check,
                entry.crc32,
                "cannot encode: member",
                "repair the archive first (`taskloop blob repair ARCHIVE.zip -o FIXED.zip`)",
            )
        members.append(
            ManifestEntry(
                name=entry.name,
                size=check.size,
                compressed_size=entry.compressed_size,
                method=entry.method,
                crc32=check.crc32,
                sha256=check.sha256,
                critical=is_critical(entry.name, critical),
                is_dir=entry.is_dir,
            )
        )
    sha = extras[0]
    assert isinstance(sha, str)
    return ArchiveInfo(src.size, sha, len(members)), tuple(members), extras[1:]


def _damage_error(
    check: MemberCheck, expected_crc: int, what: str, hint: str
) -> ChecksumMismatchError:
    """A member whose bytes do not match its CRC-32 (or do not inflate), expected vs actual."""
    return ChecksumMismatchError(
        f"{what} {check.name!r} is damaged: {check.problem}",
        member=check.name,
        kind="crc32",
        expected=f"{expected_crc:08x}",
        actual=f"{check.crc32:08x}" if check.complete else "unreadable (the data does not inflate)",
        hint=hint,
    )


def _build_header(
    archive: ArchiveInfo,
    members: tuple[ManifestEntry, ...],
    *,
    wrap: int,
    alphabet: str,
    sealing: Sealing | None,
    keys: Keys,
) -> BlobHeader:
    encryption = None
    size = archive.size
    if sealing is not None:
        sealed = seal_manifest(sealing, render_sealed_manifest(archive, members))
        encryption = EncryptionInfo(
            scheme=SCHEME,
            chunk_size=sealing.chunk_size,
            nonce_prefix=sealing.nonce_prefix,
            recipients=wrap_for(sealing, keys),
            sealed=sealed,
        )
        size = ciphertext_size(archive.size, sealing.chunk_size)
    payload = PayloadInfo("base64", alphabet, wrap, size, encoded_length(size))
    return BlobHeader(
        payload=payload,
        archive=archive,
        members=members,
        encryption=encryption,
        created_by=f"taskloop {__version__}",
    )


def _payload_text(
    src: ByteSource, *, wrap: int, alphabet: str, sealing: Sealing | None
) -> Iterator[bytes]:
    encoder = Base64Encoder(wrap=wrap, alphabet=alphabet)
    step_size = encode_chunk_size(wrap)
    progress.start("encode", src.size)
    if sealing is None:
        for piece in _archive_chunks(src, step_size):
            text = encoder.feed(piece)
            progress.advance(len(piece))
            if text:
                yield text
    else:
        cipher = ChunkEncryptor(sealing)
        for piece in _archive_chunks(src, step_size):
            text = encoder.feed(cipher.feed(piece))
            progress.advance(len(piece))
            if text:
                yield text
        yield encoder.feed(cipher.finish())
    yield encoder.finish()
    yield END_LINE + b"\n"


def _encode_options(
    wrap: int, alphabet: str, key: bytes | Keys | None, chunk_size: int
) -> tuple[Keys, Sealing | None]:
    if wrap < 0 or wrap % 4:
        raise ValueError(f"wrap must be 0 or a positive multiple of 4, got {wrap}")
    if alphabet not in ("standard", "urlsafe"):
        raise ValueError(f"alphabet must be 'standard' or 'urlsafe', got {alphabet!r}")
    keys = as_keys(key)
    return keys, (new_sealing(chunk_size) if keys else None)


def encode_zip_to_utf8_blob(
    data: bytes | bytearray | memoryview,
    *,
    wrap: int = DEFAULT_WRAP,
    alphabet: str = STANDARD,
    critical: Sequence[str] = DEFAULT_CRITICAL,
    key: bytes | Keys | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> str:
    """Encode a ZIP archive as a taskloop blob (ASCII text).

    Args:
        data: the archive's bytes.
        wrap: characters per payload line (a multiple of 4), 0 for one line.
        alphabet: "standard" or "urlsafe" base64.
        critical: glob patterns of members whose loss fails a repair.
        key: a 32-byte key or ``Keys`` (symmetric and/or RSA public keys) to encrypt for.
        chunk_size: plaintext bytes per encrypted chunk.
        limits: safety limits the archive must respect.
        workers: threads for checking members (default: CPU count).

    Raises:
        BlobError: the archive is not a ZIP, is damaged, or breaks a safety limit.
    """
    keys, sealing = _encode_options(wrap, alphabet, key, chunk_size)
    src = MemorySource(data)
    with step("encode", in_bytes=src.size) as info:
        # The payload does not depend on the analysis: encode it on another thread meanwhile.
        archive, members, (payload,) = _analyse_for_encode(
            src,
            critical=critical,
            limits=limits,
            workers=workers,
            # Pieces become str on that thread, so the result is one join, not join + decode.
            extra=[
                lambda: [
                    piece.decode("ascii")
                    for piece in _payload_text(src, wrap=wrap, alphabet=alphabet, sealing=sealing)
                ]
            ],
        )
        header = _build_header(
            archive, members, wrap=wrap, alphabet=alphabet, sealing=sealing, keys=keys
        )
        assert isinstance(payload, list)
        text = "".join([render_header(header).decode("ascii"), *payload])
        info.update(out_bytes=len(text), members=len(members), encrypted=sealing is not None)
    return text


def encode_file(
    archive_path: str | Path,
    blob_path: str | Path,
    *,
    wrap: int = DEFAULT_WRAP,
    alphabet: str = STANDARD,
    critical: Sequence[str] = DEFAULT_CRITICAL,
    key: bytes | Keys | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> BlobHeader:
    """Encode a ZIP file into a blob file, streaming (bounded memory whatever the size).

    The blob is written to a temporary file next to ``blob_path`` and renamed into place,
    so a failed encode leaves nothing behind. Arguments as for
    :func:`encode_zip_to_utf8_blob`; returns the header written.
    """
    keys, sealing = _encode_options(wrap, alphabet, key, chunk_size)
    with open_source(archive_path) as src, step("encode", in_bytes=src.size) as info:
        archive, members, _ = _analyse_for_encode(
            src, critical=critical, limits=limits, workers=workers
        )
        header = _build_header(
            archive, members, wrap=wrap, alphabet=alphabet, sealing=sealing, keys=keys
        )
        written = 0
        with atomic_output(blob_path) as out:
            for piece in (render_header(header),):
                out.write(piece)
                written += len(piece)
            for piece in _payload_text(src, wrap=wrap, alphabet=alphabet, sealing=sealing):
                out.write(piece)
                written += len(piece)
        info.update(out_bytes=written, members=len(members), encrypted=sealing is not None)
    return header


@contextmanager
def _decoded(
    blob: BlobInput | Path, keys: Keys, lenient: bool, spool: Path | None
) -> Iterator[tuple[Payload, ByteSource, str]]:
    """Decode the payload into memory (in-memory input) or into ``spool`` (file input)."""
    with open_text(blob) as (raw_read, name), step("decode", input=name) as info:
        progress.start("decode", _input_size(blob))

        def read(n: int) -> bytes:
            data = raw_read(n)
            progress.advance(len(data))
            return data

        if spool is None:
            sink = Collect()
            payload = read_payload(read, sink, keys=keys, lenient=lenient)
            src: ByteSource = MemorySource(sink.getvalue())
        else:
            with spool.open("wb") as fh:
                payload = read_payload(read, fh, keys=keys, lenient=lenient)
            src = FileSource(spool)
        info.update(out_bytes=payload.size, kind=payload.kind, problems=len(payload.problems))
    try:
        yield payload, src, name
    finally:
        if isinstance(src, FileSource):
            src.close()


@contextmanager
def _spool_for(blob: BlobInput | Path, near: Path | None = None) -> Iterator[Path | None]:
    """A temporary archive file when the input is a file (bounded memory), else None."""
    if not isinstance(blob, Path):
        yield None
        return
    directory = near.parent if near is not None else None
    fd, tmp = tempfile.mkstemp(prefix=".taskloop-", suffix=".zip.partial", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- decode, verify, repair ---------------------------------------------------------------


def _new_report(operation: str, payload: Payload, name: str) -> Report:
    archive = payload.header.archive if payload.header else None
    return Report(
        operation=operation,
        input=name,
        format=payload.kind,
        encrypted=payload.encrypted,
        archive_size_expected=archive.size if archive else None,
        archive_size_actual=payload.size,
        archive_sha256_expected=archive.sha256 if archive else None,
        archive_sha256_actual=payload.sha256,
        problems=list(payload.problems),
    )


def _analyse(src: ByteSource, payload: Payload, limits: Limits, workers: int | None) -> Analysis:
    with step("verify", in_bytes=src.size) as info:
        analysis = analyze(
            src,
            manifest=payload.manifest,
            manifest_trusted=payload.manifest_trusted,
            limits=limits,
            workers=workers,
        )
        info.update(members=len(analysis.found), problems=len(analysis.problems))
    return analysis


def _hash_problem(payload: Payload) -> str | None:
    archive = payload.header.archive if payload.header else None
    if archive is None:
        return None
    if payload.size != archive.size:
        return f"archive is {payload.size} bytes, the header says {archive.size}"
    if payload.sha256 != archive.sha256:
        return f"archive SHA-256 is {payload.sha256}, the header says {archive.sha256}"
    return None


def _verify_into(
    report: Report,
    src: ByteSource,
    payload: Payload,
    limits: Limits,
    workers: int | None,
    critical: Sequence[str],
) -> Analysis:
    analysis = _analyse(src, payload, limits, workers)
    problem = _hash_problem(payload)
    if problem:
        report.problems.append(problem)
    build_report(
        analysis,
        report,
        manifest=payload.manifest,
        manifest_trusted=payload.manifest_trusted,
        critical=critical,
    )
    return analysis


def verify_blob(
    blob: BlobInput | Path,
    *,
    key: bytes | Keys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Report:
    """Check a blob completely: header seal, archive hash, ZIP structure, and every member's
    CRC-32 and manifest SHA-256. Damage is reported, not raised; the outcome is ``intact``
    or ``damaged``.

    Raises:
        BlobInputError: the text is not a readable blob (not UTF-8, bad base64, truncated).
        CryptoError: key missing or wrong, ciphertext tampered.
        UnsafeArchiveError: hostile structure or limits crossed.
    """
    keys = as_keys(key)
    with _spool_for(blob) as spool, _decoded(blob, keys, False, spool) as (payload, src, name):
        report = _new_report("verify", payload, name)
        _verify_into(report, src, payload, limits, workers, ())
        decide(report, template=None, writing=False)
    return report


def _fast_path_ok(payload: Payload) -> bool:
    """Archive bytes identical to what the encoder verified: no member needs inflating."""
    return payload.hash_matches and not payload.problems


def _strict_decode_checks(
    src: ByteSource, payload: Payload, limits: Limits, workers: int | None
) -> None:
    """Raise the most precise error for a damaged archive, or the structural safety error."""
    problem = _hash_problem(payload)
    if payload.header is not None and problem is None:
        # Identical to what the encoder checked; the cheap structural checks still run, so a
        # hand-made hostile blob with a correct hash is refused too.
        locate_members(src, read_directory(src, max_members=limits.max_members), limits)
        return
    directory = read_directory(src, max_members=limits.max_members)
    located = locate_members(src, directory, limits)
    if problem is None:
        checks, _ = check_located(src, located, limits=limits, workers=workers)
        for member, check in zip(located, checks, strict=True):
            if check.problem is not None:
                raise _damage_error(
                    check,
                    member.entry.crc32,
                    "member",
                    "`taskloop blob repair` salvages the other members",
                )
        return
    report = Report(operation="decode")
    analysis = _analyse(src, payload, limits, workers)
    build_report(
        analysis, report, manifest=payload.manifest, manifest_trusted=payload.manifest_trusted
    )
    bad = [m for m in report.members if not m.verified]
    archive = payload.header.archive if payload.header else None
    assert archive is not None
    if bad:
        first = bad[0]
        names = ", ".join(repr(m.name) for m in bad[:5]) + (" ..." if len(bad) > 5 else "")
        kind = "sha256" if first.sha256_expected else "crc32"
        raise ChecksumMismatchError(
            f"checksum mismatch: member {first.name!r} is {first.status.value} "
            f"({first.detail}); damaged or missing: {names}",
            member=first.name,
            kind=kind,
            expected=(first.sha256_expected or "")
            if kind == "sha256"
            else (first.crc32_expected or ""),
            actual=(first.sha256_actual if kind == "sha256" else first.crc32_actual)
            or "unreadable (the data does not inflate)",
            hint="`taskloop blob repair` salvages the members that verify",
        )
    raise ChecksumMismatchError(
        f"checksum mismatch for the whole archive: {problem}; every member verifies, so the "
        "damage is in the ZIP structure",
        member=None,
        kind="sha256",
        expected=archive.sha256,
        actual=payload.sha256,
        hint="`taskloop blob repair` rebuilds the archive from its members",
    )


def decode_utf8_blob_to_zip(
    blob: BlobInput,
    *,
    key: bytes | Keys | None = None,
    repair: bool = False,
    template: bytes | None = None,
    critical: Sequence[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> bytes:
    """Decode a blob (or bare base64, a data URL, a raw ZIP) to the archive's bytes.

    Without ``repair`` any damage raises a typed ``BlobError``; the bytes returned are
    exactly the archive that was encoded. With ``repair`` the archive is rebuilt from the
    members that verify (see :func:`repair_blob` for the report).
    """
    if repair:
        return repair_blob(
            blob, key=key, template=template, critical=critical, limits=limits, workers=workers
        )[0]
    keys = as_keys(key)
    with _decoded(blob, keys, False, None) as (payload, src, _):
        _strict_decode_checks(src, payload, limits, workers)
        assert isinstance(src, MemorySource)
        return bytes(src.read_at(0, src.size))


def decode_file(
    blob_path: str | Path,
    archive_path: str | Path,
    *,
    key: bytes | Keys | None = None,
    repair: bool = False,
    template: bytes | None = None,
    critical: Sequence[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Report:
    """Decode a blob file to a ZIP file, streaming. The ZIP appears only when it is sound.

    Returns the report (outcome ``intact`` for a plain decode; see ``repair_file``).
    """
    if repair:
        return repair_file(
            blob_path,
            archive_path,
            key=key,
            template=template,
            critical=critical,
            limits=limits,
            workers=workers,
        )
    keys = as_keys(key)
    blob = Path(blob_path)
    out = Path(archive_path)
    with atomic_path(out) as tmp, _decoded(blob, keys, False, tmp) as (payload, src, name):
        _strict_decode_checks(src, payload, limits, workers)
        report = _new_report("decode", payload, name)
    report.output = str(out)
    return report


def _repair(
    blob: BlobInput | Path,
    keys: Keys,
    template: bytes | None,
    critical: Sequence[str],
    limits: Limits,
    workers: int | None,
    out: Writer,
    spool: Path | None,
) -> Report:
    with _decoded(blob, keys, True, spool) as (payload, src, name):
        report = _new_report("repair", payload, name)
        if _fast_path_ok(payload):
            report.members = [_intact(m, critical) for m in payload.manifest or ()]
            decide(report, template=template, writing=True)
            _copy_all(src, out)
            return report
        analysis = _verify_into(report, src, payload, limits, workers, critical)
        decide(report, template=template, writing=True)
        with step("write", in_bytes=src.size):
            if report.outcome == Outcome.INTACT:
                _copy_all(src, out)
            else:
                rebuild(src, analysis, report, out, template=template)
    return report


def _intact(entry: ManifestEntry, critical: Sequence[str]) -> MemberReport:
    return MemberReport(
        name=entry.name,
        status=MemberStatus.INTACT,
        critical=entry.critical or is_critical(entry.name, critical),
        size=entry.size,
        actual_size=entry.size,
        crc32_expected=f"{entry.crc32:08x}",
        crc32_actual=f"{entry.crc32:08x}",
        sha256_expected=entry.sha256,
        sha256_actual=entry.sha256,
        verified_by=["archive sha256"],
        source="manifest",
    )


def _copy_all(src: ByteSource, out: Writer) -> None:
    for pos in range(0, src.size, HASH_CHUNK):
        out.write(src.read_at(pos, HASH_CHUNK))


def repair_blob(
    blob: BlobInput,
    *,
    key: bytes | Keys | None = None,
    template: bytes | None = None,
    critical: Sequence[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> tuple[bytes, Report]:
    """Salvage a damaged blob: the archive rebuilt from every member that verifies.

    Args:
        template: bytes written in place of each lost non-critical member (else skipped).
        critical: glob patterns of members that must survive, for inputs without a
            manifest (a blob's manifest carries its own critical flags).

    Raises:
        CriticalMemberError: a critical member is lost (the report is on the error).
        DamagedArchiveError: nothing could be recovered.
        UnsafeArchiveError, CryptoError: as for decoding.
    """
    sink = Collect()
    report = _repair(blob, as_keys(key), template, critical, limits, workers, sink, None)
    return sink.getvalue(), report


def repair_file(
    blob_path: str | Path,
    archive_path: str | Path,
    *,
    key: bytes | Keys | None = None,
    template: bytes | None = None,
    critical: Sequence[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Report:
    """:func:`repair_blob` from a file to a file, streaming; nothing is written on failure."""
    out = Path(archive_path)
    with _spool_for(Path(blob_path), near=out) as spool, atomic_output(out) as fh:
        report = _repair(
            Path(blob_path), as_keys(key), template, critical, limits, workers, fh, spool
        )
    report.output = str(out)
    return report


def verify_file(
    blob_path: str | Path,
    *,
    key: bytes | Keys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Report:
    """:func:`verify_blob` for a file, in bounded memory (the archive goes to a temp file)."""
    return verify_blob(Path(blob_path), key=key, limits=limits, workers=workers)


# --- inspect ------------------------------------------------------------------------------


def inspect_blob(blob: BlobInput | Path, *, key: bytes | Keys | None = None) -> BlobInfo:
    """Header and manifest of a taskloop blob, read without decoding the payload.

    For other inputs (bare base64, data URL, raw ZIP) there is no header: the archive is
    decoded and its central directory listed instead (checksums are not computed).
    """
    keys = as_keys(key)
    size = _input_size(blob)
    with open_text(blob) as (read, _name):
        reader, opening = start_reading(read, lenient=False)
        if opening.kind == "text" and at_magic(reader):
            header = read_header(reader, lenient=False)
            assert header is not None
            if header.encryption is None:
                return BlobInfo("taskloop-blob/1", header, size, True, header.members)
            if not keys:
                return BlobInfo(
                    "taskloop-blob/1",
                    header,
                    size,
                    False,
                    note="encrypted: the manifest is sealed; pass a key to read it",
                )
            header, _ = unseal(header, keys)
            return BlobInfo("taskloop-blob/1", header, size, True, header.members)
    with _spool_for(blob) as spool, _decoded(blob, keys, False, spool) as (payload, src, _):
        directory = read_directory(src)
        members = tuple(
            ManifestEntry(
                name=e.name,
                size=e.size,
                compressed_size=e.compressed_size,
                method=e.method,
                crc32=e.crc32,
                sha256="",
                is_dir=e.is_dir,
            )
            for e in directory.entries
        )
        return BlobInfo(
            payload.kind,
            None,
            size,
            True,
            members,
            note="no taskloop header: members listed from the ZIP central directory "
            "(no SHA-256, nothing verified)",
        )


def _input_size(blob: BlobInput | Path) -> int:
    if isinstance(blob, Path):
        try:
            return blob.stat().st_size
        except OSError as exc:
            raise InputFileError(f"cannot read {str(blob)!r}: {exc.strerror}") from None
    if isinstance(blob, str):
        return len(blob)
    return len(blob)


# --- extract ------------------------------------------------------------------------------


def extract_blob(
    blob: BlobInput | Path,
    dest: str | Path,
    *,
    key: bytes | Keys | None = None,
    repair: bool = False,
    template: bytes | None = None,
    critical: Sequence[str] = (),
    overwrite: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Report:
    """Unpack a blob's archive into ``dest`` (created if needed), never writing outside it.

    Without ``repair`` the blob must be intact. With ``repair`` the members that verify
    are extracted (and the template for lost non-critical ones) and the repair report is
    returned. Existing files are kept unless ``overwrite``.
    """
    keys = as_keys(key)
    if repair:
        with _spool_for(blob) as spool, _spool_for(blob) as rebuilt:
            scratch = Scratch(rebuilt)
            with scratch:
                report = _repair(blob, keys, template, critical, limits, workers, scratch, spool)
                # The repair report is the one to return; the rebuilt archive's members
                # were verified by the repair and are checked again while extracting.
                extract_archive(
                    scratch.source(),
                    dest,
                    Report("extract"),
                    manifest=None,
                    limits=limits,
                    overwrite=overwrite,
                    workers=workers,
                )
        report.output = str(dest)
        return report
    with _spool_for(blob) as spool, _decoded(blob, keys, False, spool) as (payload, src, name):
        _strict_decode_checks(src, payload, limits, workers)
        report = _new_report("extract", payload, name)
        extract_archive(
            src,
            dest,
            report,
            manifest=payload.manifest,
            limits=limits,
            overwrite=overwrite,
            workers=workers,
        )
    return report
