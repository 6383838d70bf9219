"""Typed errors of the blob codec, each with a stable ``code``.

The classes group by what the user must do about them, which is also the CLI exit
status: fix or repair the input (``CORRUPT``), refuse a hostile archive (``UNSAFE``),
or supply the right key (``CRYPTO``). Codes are part of the public interface and are
listed in ``docs/blob-format.md``.
"""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class BlobError(TaskloopError):
    """Any failure to encode, decode, verify, repair or extract a blob."""

    code = "blob.error"
    exit_status = ExitStatus.CORRUPT


# --- the text around the payload -------------------------------------------------------


class BlobInputError(BlobError):
    """The input cannot be read as a blob at all (wrong text encoding, bad base64, ...)."""

    code = "blob.input"


class EmptyInputError(BlobInputError):
    code = "blob.empty"


class NotUtf8Error(BlobInputError):
    """The bytes are not UTF-8; ``offset`` is the first bad byte."""

    code = "blob.not_utf8"

    def __init__(self, message: str, *, offset: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.offset = offset


class WideEncodingError(BlobInputError):
    """The text is UTF-16 or UTF-32 (``encoding`` names which)."""

    code = "blob.wide_encoding"

    def __init__(self, message: str, *, encoding: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.encoding = encoding


class MojibakeError(BlobInputError):
    """UTF-8 that was decoded as latin-1/cp1252 and encoded again (``Ã©``, ``ï»¿``)."""

    code = "blob.mojibake"

    def __init__(self, message: str, *, offset: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.offset = offset


class InvalidBase64Error(BlobInputError):
    """A character outside the base64 alphabet, at ``position`` (0-based, in characters)."""

    code = "blob.invalid_base64"

    def __init__(
        self,
        message: str,
        *,
        position: int,
        line: int,
        column: int,
        char: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.position = position
        self.line = line
        self.column = column
        self.char = char


class TruncatedError(BlobInputError):
    """The input ends early: ``expected`` and ``actual`` are counted in ``unit``."""

    code = "blob.truncated"

    def __init__(
        self, message: str, *, expected: int, actual: int, unit: str, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.expected = expected
        self.actual = actual
        self.unit = unit


class HeaderError(BlobInputError):
    """The blob's header or manifest is unreadable or fails its seal."""

    code = "blob.header"


class UnsupportedFormatError(BlobInputError):
    """A format version, encoding or option this build does not know."""

    code = "blob.unsupported"


# --- the archive inside ----------------------------------------------------------------


class ArchiveError(BlobError):
    """The decoded bytes are not a sound ZIP archive."""

    code = "blob.archive"


class NotAZipError(ArchiveError):
    code = "blob.not_zip"


class ZipStructureError(ArchiveError):
    """Central directory, local header or end record is damaged or inconsistent."""

    code = "blob.zip_structure"


class ChecksumMismatchError(ArchiveError):
    """A checksum does not match. ``member`` is None for the whole archive."""

    code = "blob.checksum"

    def __init__(
        self,
        message: str,
        *,
        member: str | None,
        kind: str,
        expected: str,
        actual: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.member = member
        self.kind = kind
        self.expected = expected
        self.actual = actual


class UnsupportedMethodError(ArchiveError):
    """A member compressed or encrypted with a method taskloop does not read."""

    code = "blob.unsupported_method"


class DamagedArchiveError(ArchiveError):
    """Verification found damaged or missing members; ``report`` holds the details."""

    code = "blob.damaged"

    def __init__(self, message: str, *, report: object, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class CriticalMemberError(DamagedArchiveError):
    """Repair could not recover a member marked critical, so nothing was written."""

    code = "blob.critical_damaged"


# --- hostile archives ------------------------------------------------------------------


class UnsafeArchiveError(BlobError):
    """The archive is built to harm whoever unpacks it; nothing is written."""

    code = "blob.unsafe"
    exit_status = ExitStatus.UNSAFE

    def __init__(self, message: str, *, member: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.member = member


class PathTraversalError(UnsafeArchiveError):
    code = "blob.unsafe.path"


class BadNameError(UnsafeArchiveError):
    code = "blob.unsafe.name"


class LinkMemberError(UnsafeArchiveError):
    code = "blob.unsafe.link"


class DuplicateNameError(UnsafeArchiveError):
    code = "blob.unsafe.duplicate"


class OverlapError(UnsafeArchiveError):
    code = "blob.unsafe.overlap"


class LimitExceededError(UnsafeArchiveError):
    """A safety limit was crossed; ``limit`` names it, ``value`` and ``maximum`` say by how much."""

    code = "blob.unsafe.limit"

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        value: float,
        maximum: float,
        member: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, member=member, hint=hint)
        self.limit = limit
        self.value = value
        self.maximum = maximum


class NestingError(LimitExceededError):
    code = "blob.unsafe.nesting"


# --- encryption ------------------------------------------------------------------------


class CryptoError(BlobError):
    code = "blob.crypto"
    exit_status = ExitStatus.CRYPTO


class KeyRequiredError(CryptoError):
    code = "blob.key_required"


class KeyFormatError(CryptoError):
    code = "blob.key_format"


class WrongKeyError(CryptoError):
    code = "blob.wrong_key"


class TamperedError(CryptoError):
    """Authentication failed: ``chunks`` lists the payload chunks that failed."""

    code = "blob.tampered"

    def __init__(
        self, message: str, *, chunks: tuple[int, ...] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.chunks = chunks


# --- the file system -------------------------------------------------------------------


class TargetExistsError(BlobError):
    """``extract`` would replace something that is already there."""

    code = "blob.target_exists"
    exit_status = ExitStatus.IO
