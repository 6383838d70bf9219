"""The corruption matrix: every truncation point and thousands of bit flips, three inputs.

For a small archive (five members, stored / deflate / bzip2, about 3 KB) and three
carriers of it -- a plain blob, an encrypted blob with 1 KiB chunks, and bare base64 --
each damaged text goes through strict decode, repair and verify, and these invariants
must hold:

* strict ``decode_utf8_blob_to_zip`` returns exactly the original archive or raises a
  ``BlobError`` subclass; never another exception, never other bytes. (Bare base64 has
  no reference hash: a flip in a field no checksum covers, such as a timestamp, cannot
  be seen, so there the members -- names and bytes -- must be the original ones.)
* ``repair_blob`` raises a ``BlobError`` subclass, or returns an archive in which every
  member reported intact/recovered is present with exactly its original bytes, every
  member reported damaged/missing is absent (or is the template), and nothing is in the
  archive that the report does not list.
* ``verify_blob`` raises only ``BlobError`` subclasses and reports ``intact`` only when
  strict decode yields the original archive.

Damaged bytes that are not UTF-8 are handed to the API as bytes, the others as str.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import traceback
import zipfile
from collections.abc import Callable
from unittest import mock

import pytest

from taskloop.blob import (
    BlobError,
    CriticalMemberError,
    MemberAction,
    MemberStatus,
    Outcome,
    Report,
    decode_utf8_blob_to_zip,
    encode_zip_to_utf8_blob,
    repair_blob,
    verify_blob,
)

KEY = bytes(range(32))
FIXED_TIME = (2024, 5, 6, 7, 8, 10)
FILES: dict[str, tuple[bytes, int]] = {
    "manifest.json": (b'{"name": "corruption matrix", "version": 1}', zipfile.ZIP_DEFLATED),
    "data/qa.jsonl": (
        b"".join(b'{"question": "q%d", "answer": "a%d"}\n' % (i, i * i) for i in range(30)),
        zipfile.ZIP_DEFLATED,
    ),
    "data/bin.dat": (bytes((i * 37 + 11) % 256 for i in range(1500)), zipfile.ZIP_STORED),
    "data/empty.txt": (b"", zipfile.ZIP_STORED),
    "docs/\u00fcnicode-\u65e5\u672c.txt": (
        ("\u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u2713 " * 12).encode(),
        zipfile.ZIP_BZIP2,
    ),
}
CONTENT = {name: data for name, (data, _) in FILES.items()}
VERIFIED = (MemberStatus.INTACT, MemberStatus.RECOVERED)


def _build_zip() -> bytes:
    """The archive with fixed timestamps, so seeded damage hits the same bytes every run."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (data, method) in FILES.items():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = method
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


ARCHIVE = _build_zip()
PLAIN = encode_zip_to_utf8_blob(ARCHIVE).encode("ascii")
ENCRYPTED = encode_zip_to_utf8_blob(ARCHIVE, key=KEY, chunk_size=1024).encode("ascii")
BARE = base64.encodebytes(ARCHIVE)
KINDS: dict[str, tuple[bytes, bytes | None]] = {
    "plain": (PLAIN, None),
    "encrypted": (ENCRYPTED, KEY),
    "bare-base64": (BARE, None),
}


def _members(archive: bytes) -> dict[str, bytes]:
    """Every member's bytes, read (and CRC-checked) by the stdlib ``zipfile``.

    Three header fields are covered by no checksum, so inside bare base64 (which has no
    archive hash) a flip in them is invisible to taskloop by design, but ``zipfile``
    refuses the member: "version needed to extract" above 6.3, and the "compressed patched
    data" and "strong encryption" flag bits (5 and 6). They are neutralised while reading
    so that names and bytes are what gets compared.
    """
    with (
        mock.patch.object(zipfile, "MAX_EXTRACT_VERSION", 0xFFFF),
        zipfile.ZipFile(io.BytesIO(archive)) as zf,
    ):
        infos = zf.infolist()
        for info in infos:
            info.flag_bits &= ~0x60
        return {info.filename: zf.read(info) for info in infos}


def _as_input(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


_by_sha = {hashlib.sha256(data).hexdigest(): name for name, data in CONTENT.items()}


def _check_repair(
    kind: str,
    archive: bytes,
    report: object,
    template: bytes | None = None,
    header_intact: bool = True,
) -> None:
    assert isinstance(report, Report)
    got = _members(archive)
    names = [m.name for m in report.members]
    assert set(got) <= set(names), f"archive holds unreported members {set(got) - set(names)}"
    for m in report.members:
        if m.status in VERIFIED:
            assert m.action == MemberAction.KEPT
            assert m.name in got, f"{m.name!r} reported {m.status} but not written"
            if m.name in CONTENT:
                assert got[m.name] == CONTENT[m.name], f"{m.name!r} {m.status} with wrong bytes"
            elif "in the damaged manifest" in m.detail:
                # The damaged manifest and the archive disagree on the name of these bytes;
                # the report says so, keeps the archive's name, and the bytes are original.
                assert m.sha256_expected in _by_sha
                assert got[m.name] == CONTENT[_by_sha[m.sha256_expected]]
            else:
                # Only possible without a manifest: the name was damaged (ZIP's CRC-32 does
                # not cover names), the content verified by CRC-32 and is an original one.
                assert m.sha256_expected is None, f"{m.name!r} not in the original archive"
                assert got[m.name] in CONTENT.values()
        elif template is None:
            assert m.action == MemberAction.SKIPPED
            assert m.name not in got, f"{m.name!r} reported {m.status} but written"
        else:
            assert m.action == MemberAction.REPLACED
            assert got[m.name] == template
    if header_intact and kind != "bare-base64":
        # The sealed manifest is intact: the report names exactly the original members.
        assert sorted(names) == sorted(CONTENT)
    if report.outcome == Outcome.INTACT and kind != "bare-base64":
        assert archive == ARCHIVE


def _check_one(kind: str, data: bytes, key: bytes | None, header_intact: bool) -> None:
    blob = _as_input(data)
    try:
        decoded: bytes | None = decode_utf8_blob_to_zip(blob, key=key)
    except BlobError:
        decoded = None
    if decoded is not None and decoded != ARCHIVE:
        assert kind == "bare-base64", "strict decode returned bytes that are not the archive"
        assert _members(decoded) == CONTENT, "strict decode returned altered members"

    try:
        archive, report = repair_blob(blob, key=key)
    except CriticalMemberError as exc:
        assert exc.code == "blob.critical_damaged"
        lost = [m for m in exc.report.members if m.critical and not m.verified]
        assert lost, "CriticalMemberError without a lost critical member in its report"
    except BlobError:
        pass
    else:
        _check_repair(kind, archive, report, header_intact=header_intact)

    try:
        verified = verify_blob(blob, key=key)
    except BlobError:
        return
    if verified.outcome == Outcome.INTACT:
        assert all(m.status == MemberStatus.INTACT for m in verified.members)
        assert decoded is not None, "verify says intact but strict decode refuses"
        if kind != "bare-base64":
            assert decoded == ARCHIVE
    else:
        assert verified.outcome == Outcome.DAMAGED
        if kind != "bare-base64":
            assert decoded is None, "strict decode accepted what verify calls damaged"


def _run_cases(kind: str, cases: list[tuple[str, bytes]]) -> None:
    """Check every case; collect failures so one run reports all of them."""
    blob, key = KINDS[kind]
    head = _header_length(blob)
    failures: list[str] = []
    for label, data in cases:
        try:
            _check_one(kind, data, key, header_intact=data[:head] == blob[:head])
        except Exception as exc:  # an assertion or any non-BlobError escaping the API
            where = traceback.extract_tb(exc.__traceback__)[-1]
            failures.append(
                f"{kind} {label}: {type(exc).__name__}: {exc} ({where.filename}:{where.lineno})"
            )
    assert not failures, f"{len(failures)} of {len(cases)} cases fail:\n" + "\n".join(failures[:20])


def _header_length(blob: bytes) -> int:
    """Bytes before the payload: through the seal line ``C <sha256>`` (0 for base64)."""
    if not blob.startswith(b"TASKLOOP-BLOB "):
        return 0
    return blob.index(b"\n", blob.index(b"\nC ") + 1) + 1


def _flip_cases(blob: bytes, seed: int, count: int) -> list[tuple[str, bytes]]:
    """Seeded flips: 1 bit in 3 of 7 cases, else 2, 3, 8 or 24 bits (positions may repeat)."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        damaged = bytearray(blob)
        bits = rng.choice([1, 1, 1, 2, 3, 8, 24])
        flips = []
        for _ in range(bits):
            pos, bit = rng.randrange(len(damaged)), rng.randrange(8)
            damaged[pos] ^= 1 << bit
            flips.append(f"{pos}^{1 << bit:#04x}")
        cases.append((f"flips {','.join(flips)}", bytes(damaged)))
    return cases


# --- sanity of the fixtures -----------------------------------------------------------


def test_fixture_blobs_are_sound() -> None:
    """Undamaged, each carrier decodes to the archive and verifies intact (else the
    matrix below would pass vacuously by every case raising)."""
    assert _members(ARCHIVE) == CONTENT
    for kind, (blob, key) in KINDS.items():
        assert decode_utf8_blob_to_zip(blob.decode("ascii"), key=key) == ARCHIVE, kind
        report = verify_blob(blob, key=key)
        assert report.outcome == Outcome.INTACT, kind
        assert [m.name for m in report.members] == list(CONTENT), kind
    # 1 KiB chunks over a ~3 KB archive: the ciphertext has several chunks.
    assert len(ARCHIVE) > 2 * 1024
    assert 2000 < len(ARCHIVE) < 5000


# --- truncation at every point ---------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_truncation_point(kind: str) -> None:
    """Every prefix of the text, from empty to one byte short of whole, as str."""
    blob, _ = KINDS[kind]
    _run_cases(kind, [(f"cut at {n}", blob[:n]) for n in range(len(blob))])


@pytest.mark.parametrize("kind", ["plain", "encrypted"])
def test_truncated_blob_never_decodes(kind: str) -> None:
    """A blob has an end line and a character count: any cut at or after the payload's
    start (before the end line is complete) is refused by strict decode and verify."""
    blob, key = KINDS[kind]
    payload_start = blob.index(b"\nC ") + 1
    payload_start = blob.index(b"\n", payload_start) + 1
    end_line = blob.rindex(b"END TASKLOOP-BLOB")
    for n in range(payload_start, end_line + len(b"END TASKLOOP-BLOB") - 1):
        text = blob[:n].decode("ascii")
        with pytest.raises(BlobError):
            decode_utf8_blob_to_zip(text, key=key)


# --- bit flips --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "seed"), [("plain", 1), ("encrypted", 2), ("bare-base64", 3)])
def test_bit_flips(kind: str, seed: int) -> None:
    """900 seeded flips per carrier (2700 in all) in the default suite."""
    blob, _ = KINDS[kind]
    _run_cases(kind, _flip_cases(blob, seed, 900))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "seed"), [("plain", 11), ("encrypted", 12), ("bare-base64", 13)])
def test_bit_flips_exhaustive(kind: str, seed: int) -> None:
    """4000 more seeded flips per carrier (12000 in all), for CI."""
    blob, _ = KINDS[kind]
    _run_cases(kind, _flip_cases(blob, seed, 4000))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_single_bit_flip_of_the_first_local_header(kind: str) -> None:
    """All 8 x 43 single-bit flips of the first local header and name (``manifest.json``:
    30 fixed bytes + 13 name bytes), placed in the carrier by re-encoding the archive."""
    cases = []
    for pos in range(30 + len("manifest.json")):
        for bit in range(8):
            damaged = bytearray(ARCHIVE)
            damaged[pos] ^= 1 << bit
            cases.append((f"archive byte {pos}^{1 << bit:#04x}", _carry(kind, bytes(damaged))))
    _run_cases(kind, cases)


def _carry(kind: str, archive: bytes) -> bytes:
    """Put damaged archive bytes into the carrier's payload, the header left as it was."""
    if kind == "bare-base64":
        return base64.encodebytes(archive)
    blob, _ = KINDS[kind]
    if kind == "encrypted":
        # The ciphertext cannot be edited meaningfully; flip the same bit of the ciphertext.
        return _replace_payload(blob, lambda payload: _xor_like(payload, ARCHIVE, archive))
    return _replace_payload(blob, lambda _payload: archive)


def _xor_like(payload: bytes, before: bytes, after: bytes) -> bytes:
    """Apply to ``payload`` the byte differences between ``before`` and ``after``."""
    out = bytearray(payload)
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        out[i] ^= a ^ b
    return bytes(out)


def _replace_payload(blob: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """Decode the payload lines of ``blob``, change the bytes, and encode them again (wrap
    76, as the encoder wrote them); the header and end line are kept unchanged."""
    seal = blob.index(b"\nC ") + 1
    start = blob.index(b"\n", seal) + 1
    end = blob.rindex(b"END TASKLOOP-BLOB")
    payload = base64.b64decode(blob[start:end])
    return blob[:start] + base64.encodebytes(change(payload)) + blob[end:]


# --- repair with a template, and critical members ----------------------------------------


def _offset_of_member_data(name: str) -> int:
    """Offset of ``name``'s compressed data in ARCHIVE: local header offset + 30 + name
    length + extra length, read from the fixed local header fields."""
    with zipfile.ZipFile(io.BytesIO(ARCHIVE)) as zf:
        info = zf.getinfo(name)
    header = info.header_offset
    name_len = int.from_bytes(ARCHIVE[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(ARCHIVE[header + 28 : header + 30], "little")
    return header + 30 + name_len + extra_len


def _damage_member(name: str, at: int = 3) -> bytes:
    """A plain blob (header and manifest intact) whose archive has byte ``at`` of
    ``name``'s compressed data inverted."""
    pos = _offset_of_member_data(name) + at

    def change(payload: bytes) -> bytes:
        out = bytearray(payload)
        out[pos] ^= 0xFF
        return bytes(out)

    return _replace_payload(PLAIN, change)


def test_damaged_member_is_replaced_by_the_template() -> None:
    """``data/qa.jsonl`` damaged: with ``template=`` the repaired archive holds the
    template under its name and every other member unchanged; outcome is
    repaired_with_losses, and its report entry says damaged / replaced."""
    damaged = _damage_member("data/qa.jsonl")
    template = b'{"placeholder": true}\n'
    archive, report = repair_blob(damaged.decode("ascii"), template=template)
    _check_repair("plain", archive, report, template=template)
    got = _members(archive)
    assert got["data/qa.jsonl"] == template
    assert {k: v for k, v in got.items() if k != "data/qa.jsonl"} == {
        k: v for k, v in CONTENT.items() if k != "data/qa.jsonl"
    }
    entry = report.member("data/qa.jsonl")
    assert entry.status == MemberStatus.DAMAGED
    assert entry.action == MemberAction.REPLACED
    assert report.outcome == Outcome.REPAIRED_WITH_LOSSES
    assert [m.name for m in report.members if m.status != MemberStatus.INTACT] == ["data/qa.jsonl"]


def test_damaged_member_without_template_is_skipped() -> None:
    """The same damage without a template: the member is left out, the rest kept."""
    damaged = _damage_member("data/qa.jsonl")
    archive, report = repair_blob(damaged)
    _check_repair("plain", archive, report)
    assert "data/qa.jsonl" not in _members(archive)
    assert report.member("data/qa.jsonl").action == MemberAction.SKIPPED
    assert report.outcome == Outcome.REPAIRED_WITH_LOSSES


def test_damaged_critical_member_fails_the_repair() -> None:
    """``manifest.json`` is critical by default (the encoder marks it in the manifest):
    when its data is damaged, repair raises CriticalMemberError with the report attached,
    which lists it as damaged and failed; the template does not stand in for it."""
    damaged = _damage_member("manifest.json", at=1)
    for template in (None, b"{}"):
        with pytest.raises(CriticalMemberError) as caught:
            repair_blob(damaged.decode("ascii"), template=template)
        exc = caught.value
        assert exc.code == "blob.critical_damaged"
        assert "manifest.json" in str(exc)
        report = exc.report
        entry = report.member("manifest.json")
        assert entry.critical is True
        assert entry.status == MemberStatus.DAMAGED
        assert entry.action == MemberAction.FAILED
        assert report.outcome == Outcome.FAILED
        # The other members were verified all the same.
        assert all(
            report.member(name).status == MemberStatus.INTACT
            for name in CONTENT
            if name != "manifest.json"
        )


def test_critical_member_renamed_in_bare_base64_is_not_silently_dropped() -> None:
    """Bare base64 (no manifest) whose first local header names ``lanifest.json``
    (bit 0 of byte 30, 'm' 0x6D -> 'l' 0x6C) while the central directory says
    ``manifest.json``: the directory's member was not found, so with
    ``critical=("manifest.json",)`` repair must fail, and without it the report must
    list ``manifest.json`` as lost (not report an all-recovered "repaired")."""
    damaged = bytearray(ARCHIVE)
    assert damaged[30:43] == b"manifest.json"
    damaged[30] ^= 0x01
    text = base64.b64encode(bytes(damaged)).decode("ascii")
    with pytest.raises(CriticalMemberError) as caught:
        repair_blob(text, critical=("manifest.json",))
    assert caught.value.report.member("manifest.json").action == MemberAction.FAILED
    archive, report = repair_blob(text)
    _check_repair("bare-base64", archive, report)
    assert report.member("manifest.json").status == MemberStatus.MISSING
    assert report.outcome == Outcome.REPAIRED_WITH_LOSSES
    assert "manifest.json" not in _members(archive)


def test_damaged_manifest_line_does_not_drop_an_intact_member() -> None:
    """Bit 0 of the '{' that opens the M line of ``data/qa.jsonl`` flipped ('{' 0x7B ->
    'z' 0x7A): the line no longer parses and the seal fails, so the manifest is untrusted
    and lacks the member. The member's data and central directory entry are untouched
    and its CRC-32 verifies. Repair must keep it (reported intact or recovered), or at
    least not call the result "repaired" (nothing lost) while leaving it out."""
    pos = PLAIN.index(b'M {"name":"data/qa.jsonl"') + 2
    damaged = bytearray(PLAIN)
    assert damaged[pos : pos + 1] == b"{"
    damaged[pos] ^= 0x01
    archive, report = repair_blob(bytes(damaged).decode("ascii"))
    assert report.outcome != Outcome.REPAIRED or "data/qa.jsonl" in _members(archive)
    assert report.member("data/qa.jsonl").status in VERIFIED
    assert _members(archive)["data/qa.jsonl"] == CONTENT["data/qa.jsonl"]
