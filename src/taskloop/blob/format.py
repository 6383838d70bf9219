"""The taskloop blob text format, version 1: header, manifest, seal, payload, end line.

::

    TASKLOOP-BLOB 1
    H {"format":"taskloop-blob","version":1,...}
    M {"name":"qa.jsonl","size":1234,...}
    M ...
    C <SHA-256 of the lines above, each ending in LF>
    UEsDBBQAAAAIA...            (base64 of the archive, or of its ciphertext)
    ...
    END TASKLOOP-BLOB

``docs/blob-format.md`` is the normative description; this module is its reference
implementation. Every line is ASCII (JSON written with ``ensure_ascii``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from taskloop.blob.errors import HeaderError, UnsupportedFormatError

MAGIC = b"TASKLOOP-BLOB"
VERSION = 1
END_LINE = b"END TASKLOOP-BLOB"
FORMAT_NAME = "taskloop-blob"
MAX_HEADER_LINE = 64 << 20
_MAGIC_LINE = re.compile(rb"^TASKLOOP-BLOB (\d{1,6})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX8 = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One archive member as the encoder saw and verified it."""

    name: str
    size: int
    compressed_size: int
    method: int
    crc32: int
    sha256: str
    critical: bool = False
    is_dir: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "compressed_size": self.compressed_size,
            "method": self.method,
            "crc32": f"{self.crc32:08x}",
            "sha256": self.sha256,
            "critical": self.critical,
            "dir": self.is_dir,
        }

    @classmethod
    def from_json(cls, obj: Any) -> ManifestEntry:
        if not isinstance(obj, dict):
            raise ValueError("a manifest entry must be a JSON object")
        crc = _str(obj, "crc32")
        sha = _str(obj, "sha256")
        if not _HEX8.match(crc) or not _HEX64.match(sha):
            raise ValueError("crc32 must be 8 and sha256 64 lowercase hex digits")
        return cls(
            name=_str(obj, "name"),
            size=_uint(obj, "size"),
            compressed_size=_uint(obj, "compressed_size"),
            method=_uint(obj, "method"),
            crc32=int(crc, 16),
            sha256=sha,
            critical=bool(obj.get("critical", False)),
            is_dir=bool(obj.get("dir", False)),
        )


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    size: int
    sha256: str
    members: int

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "members": self.members}

    @classmethod
    def from_json(cls, obj: Any) -> ArchiveInfo:
        if not isinstance(obj, dict):
            raise ValueError("'archive' must be a JSON object")
        sha = _str(obj, "sha256")
        if not _HEX64.match(sha):
            raise ValueError("archive sha256 must be 64 lowercase hex digits")
        return cls(size=_uint(obj, "size"), sha256=sha, members=_uint(obj, "members"))


@dataclass(frozen=True, slots=True)
class PayloadInfo:
    encoding: str  # "base64"
    alphabet: str  # "standard" or "urlsafe"
    wrap: int  # characters per line, 0 for one line
    size: int  # bytes before base64 (ciphertext bytes when encrypted)
    chars: int  # base64 characters, padding included, whitespace excluded

    def to_json(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "alphabet": self.alphabet,
            "wrap": self.wrap,
            "size": self.size,
            "chars": self.chars,
        }

    @classmethod
    def from_json(cls, obj: Any) -> PayloadInfo:
        if not isinstance(obj, dict):
            raise ValueError("'payload' must be a JSON object")
        info = cls(
            encoding=_str(obj, "encoding"),
            alphabet=_str(obj, "alphabet"),
            wrap=_uint(obj, "wrap"),
            size=_uint(obj, "size"),
            chars=_uint(obj, "chars"),
        )
        if info.encoding != "base64":
            raise UnsupportedFormatError(
                f"payload encoding {info.encoding!r} is not supported (only 'base64')"
            )
        if info.alphabet not in ("standard", "urlsafe"):
            raise UnsupportedFormatError(
                f"base64 alphabet {info.alphabet!r} is not supported ('standard', 'urlsafe')"
            )
        return info


@dataclass(frozen=True, slots=True)
class Recipient:
    """One way to recover the data key: a symmetric key or an RSA key pair."""

    type: str  # "key" (AES-256-GCM key wrap) or "rsa-oaep-sha256"
    key_id: str
    wrapped: bytes
    nonce: bytes = b""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "key_id": self.key_id}
        if self.nonce:
            out["nonce"] = _b64(self.nonce)
        out["wrapped"] = _b64(self.wrapped)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Recipient:
        if not isinstance(obj, dict):
            raise ValueError("a recipient must be a JSON object")
        return cls(
            type=_str(obj, "type"),
            key_id=_str(obj, "key_id"),
            wrapped=_unb64(_str(obj, "wrapped")),
            nonce=_unb64(obj["nonce"]) if "nonce" in obj else b"",
        )


@dataclass(frozen=True, slots=True)
class EncryptionInfo:
    scheme: str
    chunk_size: int
    nonce_prefix: bytes
    recipients: tuple[Recipient, ...]
    sealed: bytes  # the manifest, encrypted

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "chunk_size": self.chunk_size,
            "nonce_prefix": _b64(self.nonce_prefix),
            "recipients": [r.to_json() for r in self.recipients],
            "sealed": _b64(self.sealed),
        }

    @classmethod
    def from_json(cls, obj: Any) -> EncryptionInfo:
        if not isinstance(obj, dict):
            raise ValueError("'encryption' must be a JSON object")
        recipients = obj.get("recipients")
        if not isinstance(recipients, list):
            raise ValueError("'recipients' must be a list")
        return cls(
            scheme=_str(obj, "scheme"),
            chunk_size=_uint(obj, "chunk_size"),
            nonce_prefix=_unb64(_str(obj, "nonce_prefix")),
            recipients=tuple(Recipient.from_json(r) for r in recipients),
            sealed=_unb64(_str(obj, "sealed")),
        )


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """Everything before the payload. ``archive`` and ``members`` are empty when encrypted
    until the sealed manifest is opened with the key."""

    payload: PayloadInfo
    archive: ArchiveInfo | None
    members: tuple[ManifestEntry, ...]
    encryption: EncryptionInfo | None = None
    created_by: str = ""
    version: int = VERSION
    seal_ok: bool = True
    problems: tuple[str, ...] = field(default=())

    def header_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "created_by": self.created_by,
            "payload": self.payload.to_json(),
            "archive": self.archive.to_json() if self.encryption is None and self.archive else None,
            "encryption": self.encryption.to_json() if self.encryption else None,
        }


def dumps(obj: Any) -> str:
    """Canonical JSON of the format: compact, ASCII only, keys in the order given."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def render_header(header: BlobHeader) -> bytes:
    """The header lines, manifest lines and seal line, each ending in LF."""
    lines = [MAGIC + b" " + str(VERSION).encode(), b"H " + dumps(header.header_json()).encode()]
    if header.encryption is None:
        lines.extend(b"M " + dumps(m.to_json()).encode() for m in header.members)
    body = b"".join(line + b"\n" for line in lines)
    return body + b"C " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def render_sealed_manifest(archive: ArchiveInfo, members: tuple[ManifestEntry, ...]) -> bytes:
    """The plaintext that an encrypted blob seals in ``encryption.sealed``."""
    return dumps({"archive": archive.to_json(), "members": [m.to_json() for m in members]}).encode()


def parse_sealed_manifest(data: bytes) -> tuple[ArchiveInfo, tuple[ManifestEntry, ...]]:
    try:
        obj = json.loads(data)
        return ArchiveInfo.from_json(obj["archive"]), tuple(
            ManifestEntry.from_json(m) for m in obj["members"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise HeaderError(f"sealed manifest decrypted but is not valid: {exc}") from None


def is_magic_line(line: bytes) -> bool:
    return line.rstrip(b"\r\n").startswith(MAGIC + b" ")


def parse_magic(line: bytes) -> int:
    match = _MAGIC_LINE.match(line.rstrip(b"\r\n"))
    if not match:
        escaped = b"\\n" in line[:64]
        raise HeaderError(
            f"first line {line[:40]!r} is not 'TASKLOOP-BLOB <version>'",
            hint="the text has backslash escapes such as '\\n': was it copied out of a JSON "
            "string without unescaping?"
            if escaped
            else None,
        )
    version = int(match.group(1))
    if version != VERSION:
        raise UnsupportedFormatError(
            f"blob format version {version} is newer than this taskloop reads (version {VERSION})",
            hint="upgrade taskloop",
        )
    return version


@dataclass(slots=True)
class HeaderParser:
    """Collects header lines one at a time (the caller reads them) and builds the header.

    In lenient mode damaged lines are recorded as problems instead of raised, so repair
    can go on with what is readable.
    """

    lenient: bool
    canonical: list[bytes] = field(default_factory=list)
    header_obj: dict[str, Any] | None = None
    members: list[ManifestEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seal: str | None = None
    done: bool = False

    def add_magic(self, line: bytes) -> None:
        parse_magic(line)
        self.canonical.append(line.rstrip(b"\r\n"))

    def add(self, line: bytes, lineno: int) -> None:
        """Feed one line after the magic line; sets ``done`` at the seal line."""
        text = line.rstrip(b"\r\n")
        tag, body = text[:2], text[2:]
        try:
            if tag == b"C ":
                self.seal = body.decode("ascii").strip()
                self.done = True
                return
            self.canonical.append(text)
            if tag == b"H ":
                if self.header_obj is not None:
                    raise ValueError("a second 'H' line")
                obj = json.loads(body)
                if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
                    raise ValueError("not a taskloop-blob header object")
                self.header_obj = obj
            elif tag == b"M ":
                self.members.append(ManifestEntry.from_json(json.loads(body)))
            else:
                raise ValueError(f"unknown line tag {text[:2]!r}")
        except UnsupportedFormatError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            message = f"header line {lineno} is damaged ({exc}): {text[:60]!r}"
            if not self.lenient:
                raise HeaderError(
                    message, hint="run `taskloop blob repair` to salvage what is readable"
                ) from None
            self.problems.append(message)

    def build(self) -> BlobHeader | None:
        """The parsed header, or None (lenient only) when the H line is unreadable."""
        body = b"".join(line + b"\n" for line in self.canonical)
        actual = hashlib.sha256(body).hexdigest()
        seal_ok = self.seal == actual
        if self.seal is None:
            message = "header has no seal line ('C <sha256>'): the manifest is unchecked"
        else:
            message = (
                f"header seal mismatch: expected {self.seal[:64]}, computed {actual}; the "
                "header or manifest is damaged"
            )
        if not seal_ok:
            if not self.lenient:
                raise HeaderError(
                    message, hint="run `taskloop blob repair` to salvage what is readable"
                )
            self.problems.append(message)
        if self.header_obj is None:
            if not self.lenient:
                raise HeaderError("header has no 'H' line")
            self.problems.append("header line 'H' is missing or unreadable")
            return None
        obj = self.header_obj
        try:
            payload = PayloadInfo.from_json(obj["payload"])
            encryption = (
                EncryptionInfo.from_json(obj["encryption"]) if obj.get("encryption") else None
            )
            archive = (
                ArchiveInfo.from_json(obj["archive"])
                if encryption is None and obj.get("archive")
                else None
            )
            version = int(obj.get("version", VERSION))
        except UnsupportedFormatError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            if not self.lenient:
                raise HeaderError(f"header line 'H' is not valid: {exc}") from None
            self.problems.append(f"header line 'H' is not valid: {exc}")
            return None
        if encryption is None and archive is None:
            message = "header has neither 'archive' nor 'encryption'"
            if not self.lenient:
                raise HeaderError(message)
            self.problems.append(message)
        return BlobHeader(
            payload=payload,
            archive=archive,
            members=tuple(self.members),
            encryption=encryption,
            created_by=str(obj.get("created_by", "")),
            version=version,
            seal_ok=seal_ok,
            problems=tuple(self.problems),
        )


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _uint(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key!r} must be a non-negative integer")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in header: {exc}") from None
