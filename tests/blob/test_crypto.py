"""Encryption: key files, the chunked AES-256-GCM stream, recipients, and what a wrong key,
a tampered chunk or a cut stream look like."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskloop.blob import (
    KeyFormatError,
    KeyRequiredError,
    Keys,
    TamperedError,
    TruncatedError,
    WrongKeyError,
    decode_utf8_blob_to_zip,
    encode_zip_to_utf8_blob,
    generate_key,
    inspect_blob,
    key_id,
    load_key_file,
    parse_symmetric_key,
    repair_blob,
    verify_blob,
)
from taskloop.blob.crypto import (
    TAG_SIZE,
    ChunkDecryptor,
    ChunkEncryptor,
    Sealing,
    ciphertext_size,
    new_sealing,
)
from taskloop.errors import ExitStatus
from tests.conftest import make_zip, read_zip

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_symmetric_key_formats_all_parse_to_the_same_key(tmp_path):
    for text in (
        KEY.hex().encode(),
        KEY.hex().upper().encode() + b"\n",
        base64.b64encode(KEY),
        KEY,
    ):
        path = tmp_path / "k"
        path.write_bytes(text)
        assert load_key_file(path).symmetric == (KEY,)


@pytest.mark.parametrize("text", [b"abc", b"00" * 31, b"zz" * 32, b""])
def test_bad_key_text_is_a_key_format_error_with_a_hint(text):
    with pytest.raises(KeyFormatError) as info:
        parse_symmetric_key(text, "key file 'k'")
    assert info.value.code == "blob.key_format"
    assert "key file 'k'" in info.value.message
    assert f"got {len(text)} bytes" in info.value.message
    assert "keygen" in (info.value.hint or "")
    assert info.value.exit_status == ExitStatus.CRYPTO


def test_key_id_is_the_documented_hkdf_output():
    """docs/blob-format.md: key_id = first 8 bytes of HKDF-SHA256(K, info="taskloop key id")."""
    expected = HKDF(hashes.SHA256(), 8, None, b"taskloop key id").derive(KEY).hex()
    assert key_id(KEY) == expected
    assert len(expected) == 16 and key_id(generate_key()) != expected


def test_ciphertext_size_counts_one_tag_per_chunk_and_at_least_one_chunk():
    """size + 16 * max(1, ceil(size / chunk)): 0 -> 16, 1024 -> 1040, 1025 -> 1057."""
    assert ciphertext_size(0, 1024) == 16
    assert ciphertext_size(1024, 1024) == 1040
    assert ciphertext_size(1025, 1024) == 1025 + 32


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 5000])
def test_chunk_stream_round_trips_in_any_feeding(size):
    sealing = new_sealing(1024)
    plain = os.urandom(size)
    enc = ChunkEncryptor(sealing)
    sealed = b"".join(enc.feed(plain[i : i + 700]) for i in range(0, size, 700)) + enc.finish()
    assert len(sealed) == ciphertext_size(size, 1024)
    dec = ChunkDecryptor(sealing)
    opened = b"".join(dec.feed(sealed[i : i + 333]) for i in range(0, len(sealed), 333))
    assert opened + dec.finish() == plain


def test_chunks_follow_the_documented_nonce_layout():
    """Chunk i opens with AES-256-GCM(HKDF(DK, "taskloop-blob/1 payload")) under
    nonce_prefix || i (4 bytes, big-endian) || last flag; checked with cryptography directly."""
    sealing = Sealing(bytes(32), b"\x01" * 7, 1024)
    plain = os.urandom(2500)  # chunks of 1024, 1024, 452
    enc = ChunkEncryptor(sealing)
    sealed = enc.feed(plain) + enc.finish()
    key = HKDF(hashes.SHA256(), 32, None, b"taskloop-blob/1 payload").derive(bytes(32))
    aead = AESGCM(key)
    step = 1024 + TAG_SIZE
    pieces = [sealed[i : i + step] for i in range(0, len(sealed), step)]
    assert len(pieces) == 3
    out = b""
    for i, piece in enumerate(pieces):
        last = b"\x01" if i == 2 else b"\x00"
        out += aead.decrypt(b"\x01" * 7 + i.to_bytes(4, "big") + last, piece, None)
    assert out == plain


def _sealed(plain: bytes, chunk: int = 1024) -> tuple[Sealing, bytes]:
    sealing = new_sealing(chunk)
    enc = ChunkEncryptor(sealing)
    return sealing, enc.feed(plain) + enc.finish()


def test_reordered_chunks_fail_authentication_naming_the_chunk():
    sealing, sealed = _sealed(os.urandom(3000))
    step = 1024 + TAG_SIZE
    swapped = sealed[step : 2 * step] + sealed[:step] + sealed[2 * step :]
    dec = ChunkDecryptor(sealing)
    with pytest.raises(TamperedError) as info:
        dec.feed(swapped)
        dec.finish()
    assert info.value.chunks == (0,)
    assert info.value.code == "blob.tampered"


def test_stream_cut_at_a_chunk_boundary_is_truncated_not_tampered():
    sealing, sealed = _sealed(os.urandom(3000))
    step = 1024 + TAG_SIZE
    dec = ChunkDecryptor(sealing)
    with pytest.raises(TruncatedError) as info:
        dec.feed(sealed[: 2 * step])
        dec.finish()
    assert info.value.unit == "chunks"
    assert "cut short" in info.value.message


def test_lenient_decryption_keeps_intact_chunks_and_zero_fills_holes():
    plain = os.urandom(3000)
    sealing, sealed = _sealed(plain)
    damaged = bytearray(sealed)
    damaged[1040 + 5] ^= 0x01  # inside chunk 1
    dec = ChunkDecryptor(sealing, lenient=True)
    out = dec.feed(bytes(damaged)) + dec.finish()
    assert out[:1024] == plain[:1024]
    assert out[1024:2048] == bytes(1024)
    assert out[2048:] == plain[2048:]
    assert dec.holes == [(1024, 2048)]
    assert dec.failed == [1]


def test_encrypted_blob_hides_the_manifest_and_round_trips(small_zip, small_files):
    text = encode_zip_to_utf8_blob(small_zip, key=KEY)
    assert "data/qa.jsonl" not in text and "manifest.json" not in text
    assert decode_utf8_blob_to_zip(text, key=KEY) == small_zip
    info = inspect_blob(text)
    assert not info.manifest_readable and info.members == ()
    assert info.header is not None and info.header.encryption is not None
    assert [r.key_id for r in info.header.encryption.recipients] == [key_id(KEY)]
    opened = inspect_blob(text, key=KEY)
    assert [m.name for m in opened.members] == list(small_files)
    report = verify_blob(text, key=KEY)
    assert report.outcome.value == "intact" and report.encrypted


def test_missing_and_wrong_keys_are_told_apart(small_zip):
    text = encode_zip_to_utf8_blob(small_zip, key=KEY)
    with pytest.raises(KeyRequiredError) as missing:
        decode_utf8_blob_to_zip(text)
    assert key_id(KEY) in missing.value.message
    other = generate_key()
    with pytest.raises(WrongKeyError) as wrong:
        decode_utf8_blob_to_zip(text, key=other)
    assert key_id(KEY) in wrong.value.message and key_id(other) in wrong.value.message
    assert wrong.value.exit_status == ExitStatus.CRYPTO


def test_tampered_wrapped_key_is_reported_as_tampering(small_zip):
    text = encode_zip_to_utf8_blob(small_zip, key=KEY)
    start = text.index('"wrapped":"') + len('"wrapped":"')
    flipped = "A" if text[start] != "A" else "B"
    bad = text[:start] + flipped + text[start + 1 :]
    with pytest.raises(TamperedError) as info:
        # The seal no longer matches either; repair mode goes past the seal to the key.
        repair_blob(bad, key=KEY)
    assert "wrapped data key" in info.value.message


def test_rsa_recipients_decrypt_with_their_private_key(small_zip, rsa_key, tmp_path):
    public_pem = tmp_path / "pub.pem"
    public_pem.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_pem = tmp_path / "priv.pem"
    private_pem.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1
            serialization.NoEncryption(),
        )
    )
    text = encode_zip_to_utf8_blob(small_zip, key=load_key_file(public_pem).merge(Keys((KEY,))))
    assert decode_utf8_blob_to_zip(text, key=load_key_file(private_pem)) == small_zip
    assert decode_utf8_blob_to_zip(text, key=KEY) == small_zip
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WrongKeyError):
        decode_utf8_blob_to_zip(text, key=Keys(private=(stranger,)))


def test_password_protected_private_key_reads_its_password_from_the_environment(
    rsa_key, tmp_path, monkeypatch
):
    path = tmp_path / "priv.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    monkeypatch.delenv("TASKLOOP_PRIVATE_KEY_PASSWORD", raising=False)
    with pytest.raises(KeyFormatError, match="no password"):
        load_key_file(path)
    monkeypatch.setenv("TASKLOOP_PRIVATE_KEY_PASSWORD", "s3cret")
    assert len(load_key_file(path).private) == 1


def test_small_rsa_keys_are_refused(tmp_path):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "weak.pem"
    path.write_bytes(
        weak.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFormatError, match="1024-bit"):
        load_key_file(path)


def test_repair_of_an_encrypted_blob_keeps_members_in_intact_chunks():
    files = {f"f{i}.bin": os.urandom(3000) for i in range(6)}
    archive = make_zip(files, method=0)
    text = encode_zip_to_utf8_blob(archive, key=KEY, chunk_size=1024, wrap=0)
    lines = text.split("\n")
    payload_line = next(i for i, line in enumerate(lines) if line.startswith("C ")) + 1
    body = lines[payload_line]
    # Damage ciphertext byte ~4000 (chunk 3, inside f1.bin which spans bytes ~3050-6050).
    pos = 4 * (4000 // 3)
    lines[payload_line] = body[:pos] + ("A" if body[pos] != "A" else "B") + body[pos + 1 :]
    archive_out, report = repair_blob("\n".join(lines), key=KEY)
    recovered = read_zip(archive_out)
    assert report.member("f1.bin").status.value == "damaged"
    assert "f1.bin" not in recovered
    for name in ("f0.bin", "f2.bin", "f3.bin", "f4.bin", "f5.bin"):
        assert recovered[name] == files[name]
    assert any("chunk 3 fails authentication" in p for p in report.problems)
