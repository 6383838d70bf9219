"""Optional encryption: AES-256-GCM over the payload in authenticated chunks.

Construction (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as
used by age and Tink): a random 256-bit data key per blob; HKDF-SHA256 derives a
payload key and a manifest key from it. The payload is cut into ``chunk_size`` pieces,
each sealed with AES-256-GCM under the nonce

    nonce_prefix (7 random bytes) || chunk counter (4 bytes, big-endian) || last flag (1 byte)

so a chunk that is altered, moved, dropped, or a stream cut at a chunk boundary fails
authentication, while every undamaged chunk still decrypts on its own (repair keeps
them). The data key is wrapped for each recipient: AES-256-GCM under a symmetric key
(key file or ``TASKLOOP_BLOB_KEY``) or RSA-OAEP-SHA256 under a public key.

All primitives come from ``cryptography``; nothing here is home-made but the framing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskloop.blob.errors import (
    KeyFormatError,
    KeyRequiredError,
    TamperedError,
    TruncatedError,
    UnsupportedFormatError,
    WrongKeyError,
)
from taskloop.blob.format import EncryptionInfo, Recipient

SCHEME = "aes-256-gcm-stream-v1"
KEY_SIZE = 32
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
DEFAULT_CHUNK_SIZE = 64 << 10
MAX_CHUNKS = 1 << 32
KEY_ENV = "TASKLOOP_BLOB_KEY"
PRIVATE_KEY_PASSWORD_ENV = "TASKLOOP_PRIVATE_KEY_PASSWORD"  # noqa: S105 - a variable name
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
_WRAP_AAD = b"taskloop-blob/1 key wrap"
_MANIFEST_AAD = b"taskloop-blob/1 manifest"
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class Keys:
    """What the user holds: symmetric keys, RSA private keys (decrypt), public keys (encrypt)."""

    symmetric: tuple[bytes, ...] = ()
    private: tuple[rsa.RSAPrivateKey, ...] = ()
    public: tuple[rsa.RSAPublicKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.symmetric or self.private or self.public)

    def merge(self, other: Keys) -> Keys:
        return Keys(
            self.symmetric + other.symmetric,
            self.private + other.private,
            self.public + other.public,
        )


NO_KEYS = Keys()


def generate_key() -> bytes:
    """A new random 256-bit symmetric key."""
    return os.urandom(KEY_SIZE)


def key_id(key: bytes) -> str:
    """A public 64-bit identifier of a symmetric key (HKDF output, reveals nothing of it)."""
    return _hkdf(key, b"taskloop key id", 8).hex()


def public_key_id(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def parse_symmetric_key(text: bytes, where: str) -> bytes:
    """A 256-bit key from 64 hex digits, base64 of 32 bytes, or 32 raw bytes."""
    if len(text) == KEY_SIZE and not text.strip().isalnum():
        return text
    stripped = text.strip()
    try:
        decoded = stripped.decode("ascii")
    except UnicodeDecodeError:
        decoded = ""
    if _HEX_KEY.match(decoded):
        return bytes.fromhex(decoded)
    try:
        raw = base64.b64decode(decoded, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) == KEY_SIZE:
        return raw
    if len(text) == KEY_SIZE:
        return text
    raise KeyFormatError(
        f"{where} is not a 256-bit key: expected 64 hex digits, base64 of 32 bytes, 32 raw "
        f"bytes, or a PEM RSA key; got {len(text)} bytes",
        hint="create one with `taskloop blob keygen -o KEYFILE`",
    )


def load_key_file(path: str | Path) -> Keys:
    """Read a key file: a symmetric key, or a PEM RSA private or public key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFormatError(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    if b"-----BEGIN" in data:
        return _load_pem(data, str(path))
    return Keys(symmetric=(parse_symmetric_key(data, f"key file {str(path)!r}"),))


def _load_pem(data: bytes, where: str) -> Keys:
    if b"PRIVATE KEY" in data:
        password = os.environ.get(PRIVATE_KEY_PASSWORD_ENV)
        try:
            key = serialization.load_pem_private_key(
                data, password=password.encode() if password else None
            )
        except TypeError:
            raise KeyFormatError(
                f"{where} is an encrypted private key and no password was given",
                hint=f"set {PRIVATE_KEY_PASSWORD_ENV}",
            ) from None
        except ValueError as exc:
            raise KeyFormatError(f"{where} is not a readable PEM private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFormatError(f"{where} is not an RSA key (only RSA-OAEP is supported)")
        return Keys(private=(key,))
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFormatError(f"{where} is not a readable PEM public key: {exc}") from None
    if not isinstance(public, rsa.RSAPublicKey):
        raise KeyFormatError(f"{where} is not an RSA key (only RSA-OAEP is supported)")
    if public.key_size < 2048:
        raise KeyFormatError(f"{where} is a {public.key_size}-bit RSA key; use 2048 bits or more")
    return Keys(public=(public,))


def keys_from_env() -> Keys:
    value = os.environ.get(KEY_ENV)
    if not value:
        return NO_KEYS
    return Keys(symmetric=(parse_symmetric_key(value.encode(), f"${KEY_ENV}"),))


def _hkdf(key: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_CHUNKS:
        raise ValueError("payload too large for the chunk counter")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


@dataclass(slots=True)
class Sealing:
    """The per-blob secrets: data key and the keys derived from it."""

    data_key: bytes
    nonce_prefix: bytes
    chunk_size: int

    @property
    def payload_key(self) -> AESGCM:
        return AESGCM(_hkdf(self.data_key, b"taskloop-blob/1 payload"))

    @property
    def manifest_key(self) -> AESGCM:
        return AESGCM(_hkdf(self.data_key, b"taskloop-blob/1 manifest"))


def new_sealing(chunk_size: int = DEFAULT_CHUNK_SIZE) -> Sealing:
    if chunk_size < 1024 or chunk_size > (64 << 20):
        raise ValueError("chunk_size must be between 1 KiB and 64 MiB")
    return Sealing(generate_key(), os.urandom(NONCE_PREFIX_SIZE), chunk_size)


def ciphertext_size(plain_size: int, chunk_size: int) -> int:
    chunks = max(1, -(-plain_size // chunk_size))
    return plain_size + chunks * TAG_SIZE


def wrap_for(sealing: Sealing, keys: Keys) -> tuple[Recipient, ...]:
    """One recipient entry per symmetric and public key."""
    out: list[Recipient] = []
    for key in keys.symmetric:
        nonce = os.urandom(12)
        wrapped = AESGCM(key).encrypt(nonce, sealing.data_key, _WRAP_AAD)
        out.append(Recipient("key", key_id(key), wrapped, nonce))
    for public in keys.public:
        out.append(
            Recipient(
                "rsa-oaep-sha256", public_key_id(public), public.encrypt(sealing.data_key, _OAEP)
            )
        )
    for private in keys.private:
        public = private.public_key()
        out.append(
            Recipient(
                "rsa-oaep-sha256", public_key_id(public), public.encrypt(sealing.data_key, _OAEP)
            )
        )
    if not out:
        raise KeyRequiredError("encryption asked for but no key or recipient given")
    return tuple(out)


def seal_manifest(sealing: Sealing, plaintext: bytes) -> bytes:
    # The manifest key is used once per blob, so a fixed nonce is safe.
    return sealing.manifest_key.encrypt(b"\x00" * 12, plaintext, _MANIFEST_AAD)


def open_sealing(info: EncryptionInfo, keys: Keys) -> Sealing:
    """Recover the data key with whichever of the user's keys the blob was sealed for.

    Raises:
        UnsupportedFormatError: unknown scheme.
        KeyRequiredError: the blob is encrypted and no key was given.
        WrongKeyError: none of the given keys is a recipient.
        TamperedError: a matching recipient entry fails authentication.
    """
    if info.scheme != SCHEME:
        raise UnsupportedFormatError(f"encryption scheme {info.scheme!r} is not supported")
    if len(info.nonce_prefix) != NONCE_PREFIX_SIZE:
        raise TamperedError("encryption header is damaged: the nonce prefix has the wrong size")
    recipients = ", ".join(f"{r.type}:{r.key_id}" for r in info.recipients) or "none"
    if not keys:
        raise KeyRequiredError(
            f"the blob is encrypted (for {recipients}) and no key was given",
            hint=f"pass --key-file KEYFILE or set {KEY_ENV}",
        )
    for key in keys.symmetric:
        kid = key_id(key)
        for r in info.recipients:
            if r.type == "key" and r.key_id == kid:
                try:
                    data_key = AESGCM(key).decrypt(r.nonce, r.wrapped, _WRAP_AAD)
                except (InvalidTag, ValueError):
                    raise TamperedError(
                        f"the wrapped data key for key {kid} fails authentication: the header "
                        "was altered"
                    ) from None
                return Sealing(data_key, info.nonce_prefix, info.chunk_size)
    for private in keys.private:
        kid = public_key_id(private.public_key())
        for r in info.recipients:
            if r.type == "rsa-oaep-sha256" and r.key_id == kid:
                try:
                    data_key = private.decrypt(r.wrapped, _OAEP)
                except ValueError:
                    raise TamperedError(
                        f"the RSA-wrapped data key for {kid} does not decrypt: the header was "
                        "altered"
                    ) from None
                return Sealing(data_key, info.nonce_prefix, info.chunk_size)
    given = [key_id(k) for k in keys.symmetric] + [
        public_key_id(p.public_key()) for p in keys.private
    ]
    raise WrongKeyError(
        f"wrong key: the blob is encrypted for {recipients}; the key(s) given have id(s) "
        f"{', '.join(given) or 'none usable for decryption'}",
        hint="use the key file the blob was encrypted with (`taskloop blob inspect` shows "
        "its key ids)",
    )


def open_manifest(sealing: Sealing, sealed: bytes) -> bytes:
    try:
        return sealing.manifest_key.decrypt(b"\x00" * 12, sealed, _MANIFEST_AAD)
    except InvalidTag:
        raise TamperedError(
            "the sealed manifest fails authentication: the header was altered"
        ) from None


class ChunkEncryptor:
    """Seal a byte stream chunk by chunk; the final chunk (maybe empty) carries the last flag."""

    def __init__(self, sealing: Sealing) -> None:
        self._aead = sealing.payload_key
        self._prefix = sealing.nonce_prefix
        self._size = sealing.chunk_size
        self._buf = bytearray()
        self._counter = 0

    def feed(self, data: bytes | memoryview) -> bytes:
        self._buf += data
        out: list[bytes] = []
        # Keep at least one byte back: only finish() knows which chunk is last.
        while len(self._buf) > self._size:
            piece = bytes(self._buf[: self._size])
            del self._buf[: self._size]
            out.append(self._aead.encrypt(_nonce(self._prefix, self._counter, False), piece, None))
            self._counter += 1
        return b"".join(out)

    def finish(self) -> bytes:
        piece = bytes(self._buf)
        self._buf.clear()
        return self._aead.encrypt(_nonce(self._prefix, self._counter, True), piece, None)


@dataclass(slots=True)
class ChunkDecryptor:
    """Open a sealed stream chunk by chunk.

    Strict mode raises on the first chunk that fails. Lenient mode (repair) replaces a
    failed chunk by zeros of the same length, records it in ``holes`` (plaintext byte
    ranges), and goes on, so members in other chunks survive.
    """

    sealing: Sealing
    lenient: bool = False
    holes: list[tuple[int, int]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _counter: int = 0
    _plain: int = 0
    _aead: AESGCM | None = None

    def __post_init__(self) -> None:
        self._aead = self.sealing.payload_key

    @property
    def _sealed_size(self) -> int:
        return self.sealing.chunk_size + TAG_SIZE

    def feed(self, data: bytes | memoryview) -> bytes:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) > self._sealed_size:
            piece = bytes(self._buf[: self._sealed_size])
            del self._buf[: self._sealed_size]
            out.append(self._open(piece, last=False))
        return b"".join(out)

    def finish(self) -> bytes:
        piece = bytes(self._buf)
        self._buf.clear()
        if len(piece) < TAG_SIZE:
            return self._truncated(piece)
        assert self._aead is not None
        plain = self._try(piece, last=True)
        if plain is None:
            # A whole chunk that opens without the last flag: the stream was cut after it.
            opened = self._try(piece, last=False) if len(piece) == self._sealed_size else None
            if opened is not None:
                return self._truncated(b"", opened=opened)
            return self._fail(piece)
        self._plain += len(plain)
        return plain

    def _try(self, piece: bytes, *, last: bool) -> bytes | None:
        assert self._aead is not None
        try:
            return self._aead.decrypt(
                _nonce(self.sealing.nonce_prefix, self._counter, last), piece, None
            )
        except InvalidTag:
            return None

    def _open(self, piece: bytes, *, last: bool) -> bytes:
        plain = self._try(piece, last=last)
        if plain is None:
            return self._fail(piece)
        self._counter += 1
        self._plain += len(plain)
        return plain

    def _fail(self, piece: bytes) -> bytes:
        index = self._counter
        self._counter += 1
        if not self.lenient:
            raise TamperedError(
                f"encrypted chunk {index} (payload bytes {index * self._sealed_size}-"
                f"{index * self._sealed_size + len(piece)}) fails authentication: the blob was "
                "altered or damaged",
                chunks=(index,),
                hint="`taskloop blob repair --key-file ...` keeps the members in intact chunks",
            )
        size = max(0, len(piece) - TAG_SIZE)
        self.holes.append((self._plain, self._plain + size))
        self.failed.append(index)
        if len(self.problems) < 20:
            self.problems.append(
                f"encryption: chunk {index} fails authentication; its {size} bytes are lost"
            )
        self._plain += size
        return b"\x00" * size

    def _truncated(self, piece: bytes, opened: bytes | None = None) -> bytes:
        message = (
            f"encrypted payload is cut short: chunk {self._counter} is not marked as the last "
            f"one ({self._plain + len(opened or b'')} bytes decrypted)"
        )
        if not self.lenient:
            raise TruncatedError(
                message,
                expected=self._counter + 2,
                actual=self._counter + 1,
                unit="chunks",
                hint="`taskloop blob repair --key-file ...` keeps what arrived",
            )
        self.problems.append(message)
        if opened is not None:
            self._counter += 1
            self._plain += len(opened)
            return opened
        return b""
