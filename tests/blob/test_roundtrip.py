"""Round trips: every archive comes back byte-identical, whatever carries it.

Archives are drawn by hypothesis: empty files, binary, text in many scripts (Latin,
CJK, Arabic, Devanagari, emoji), Unicode names, up to dozens of members, each stored,
deflated or bzip2-compressed. They travel through the in-memory API, the file API and
the CLI (in-process), and through the forms people already have: bare base64 (wrapped or
not, padded or not, URL-safe), a data URL, a UTF-8 BOM, CRLF line ends, the raw ZIP.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from taskloop.blob import (
    MemberStatus,
    Outcome,
    decode_file,
    decode_utf8_blob_to_zip,
    encode_file,
    encode_zip_to_utf8_blob,
    inspect_blob,
    key_id,
    repair_blob,
    verify_blob,
)
from taskloop.cli import app

KEY = bytes(range(1, 33))
METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]
SCRIPTS = (
    "abcXYZ019 -_.,"
    "\u00e9\u00fc\u00df\u00f8"  # Latin accents
    "\u65e5\u672c\u8a9e\u4e2d\u6587\ud55c\uad6d\uc5b4"  # CJK, Hangul
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"  # Arabic
    "\u0939\u093f\u0928\u094d\u0926\u0940"  # Devanagari
    "\u0416\u0436\u03a9\u05d0"  # Cyrillic, Greek, Hebrew
    "\U0001f600\U0001f680\u2713\u00a0"  # emoji, check mark, no-break space
)

name_parts = st.text(alphabet=SCRIPTS, min_size=1, max_size=10).filter(
    lambda part: part.strip(" .") == part and part not in (".", "..")
)
contents = st.one_of(
    st.just(b""),
    st.binary(max_size=3000),
    st.text(alphabet=SCRIPTS + "\n\t\"'{}[]:", max_size=800).map(str.encode),
    st.tuples(st.binary(min_size=1, max_size=40), st.integers(1, 200)).map(lambda t: t[0] * t[1]),
)


@st.composite
def archives(draw: st.DrawFn, max_members: int = 12) -> tuple[bytes, dict[str, bytes]]:
    """A ZIP and its members. The first path component starts with the member's index,
    so names never collide (not even by case or normalisation) and no file is also a
    directory; empty names, '.', '..' and control characters are never drawn."""
    count = draw(st.integers(min_value=0, max_value=max_members))
    files: dict[str, bytes] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            parts = draw(st.lists(name_parts, min_size=1, max_size=3))
            name = "/".join([f"{i:03d}{parts[0]}", *parts[1:]])
            data = draw(contents)
            info = zipfile.ZipInfo(name, date_time=(2023, 12, 31, 23, 59, 58))
            info.compress_type = draw(st.sampled_from(METHODS))
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
            files[name] = data
    return buf.getvalue(), files


def members(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def assert_intact(blob: str | bytes, archive: bytes, key: bytes | None = None) -> None:
    """Decode gives the archive back; verify says intact for the blob and every member;
    repair changes nothing."""
    assert decode_utf8_blob_to_zip(blob, key=key) == archive
    report = verify_blob(blob, key=key)
    assert report.outcome.value == "intact", report.summary()
    assert all(m.status == "intact" for m in report.members)
    assert [m.name for m in report.members] == list(members(archive))
    repaired, repair_report = repair_blob(blob, key=key)
    assert repaired == archive
    assert repair_report.outcome == Outcome.INTACT


# --- the in-memory API ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(drawn=archives(), wrap=st.sampled_from([0, 4, 64, 76, 1000]), urlsafe=st.booleans())
def test_in_memory_round_trip(
    drawn: tuple[bytes, dict[str, bytes]], wrap: int, urlsafe: bool
) -> None:
    archive, files = drawn
    alphabet = "urlsafe" if urlsafe else "standard"
    blob = encode_zip_to_utf8_blob(archive, wrap=wrap, alphabet=alphabet)
    assert blob.isascii()
    assert members(decode_utf8_blob_to_zip(blob)) == files
    assert_intact(blob, archive)
    assert_intact(blob.encode("ascii"), archive)
    # The manifest describes every member as the archive does.
    info = inspect_blob(blob)
    assert info.header is not None and info.header.archive is not None
    assert info.header.archive.size == len(archive)
    assert [(m.name, m.size) for m in info.members] == [(n, len(d)) for n, d in files.items()]


@settings(max_examples=40, deadline=None)
@given(drawn=archives(max_members=6), chunk_size=st.sampled_from([1024, 4096, 64 << 10]))
def test_encrypted_round_trip(drawn: tuple[bytes, dict[str, bytes]], chunk_size: int) -> None:
    """Encrypted for a 32-byte key, the archive comes back with that key; the blob text
    does not contain the members' names; inspect shows the manifest only with the key."""
    archive, files = drawn
    blob = encode_zip_to_utf8_blob(archive, key=KEY, chunk_size=chunk_size)
    assert f'"key_id":"{key_id(KEY)}"' in blob
    assert "\nM " not in blob  # no clear-text manifest lines
    for name in files:
        assert json.dumps(name) not in blob
    assert_intact(blob, archive, key=KEY)
    assert inspect_blob(blob).manifest_readable is False
    assert [m.name for m in inspect_blob(blob, key=KEY).members] == list(files)


@pytest.mark.parametrize("wrap", [0, 4, 64, 76, 1000])
@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
def test_wrap_widths_and_alphabets(small_zip: bytes, wrap: int, alphabet: str) -> None:
    """Payload lines are exactly ``wrap`` characters (the last 1..wrap), a single line
    for 0; characters total 4 * ceil(size / 3); the URL-safe alphabet has no '+' or '/'
    and the standard one no '-' or '_' in the payload."""
    blob = encode_zip_to_utf8_blob(small_zip, wrap=wrap, alphabet=alphabet)
    lines = blob.split("\n")
    assert lines[-1] == "" and lines[-2] == "END TASKLOOP-BLOB"
    start = next(i for i, line in enumerate(lines) if line.startswith("C ")) + 1
    payload = lines[start:-2]
    chars = 4 * -(-len(small_zip) // 3)
    assert sum(map(len, payload)) == chars
    if wrap:
        assert all(len(line) == wrap for line in payload[:-1])
        assert 1 <= len(payload[-1]) <= wrap
    else:
        assert len(payload) == 1
    text = "".join(payload)
    if alphabet == "urlsafe":
        assert "+" not in text and "/" not in text
        assert base64.urlsafe_b64decode(text) == small_zip
    else:
        assert "-" not in text and "_" not in text
        assert base64.b64decode(text) == small_zip
    assert f'"alphabet":"{alphabet}","wrap":{wrap},' in lines[1]
    assert_intact(blob, small_zip)


def test_many_members() -> None:
    """500 members of every method, tiny and empty ones among them."""
    files = {f"d{i % 7}/m{i:04d}-\u00e9.txt": (b"x%d\n" % i) * (i % 5) for i in range(500)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, (name, data) in enumerate(files.items()):
            zf.writestr(name, data, compress_type=METHODS[i % 3])
    archive = buf.getvalue()
    blob = encode_zip_to_utf8_blob(archive)
    assert blob.count("\nM ") == 500
    assert_intact(blob, archive)
    assert members(decode_utf8_blob_to_zip(blob)) == files


def test_empty_archive() -> None:
    """A ZIP with no members is 22 bytes (just the end record) and round-trips."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    data = buf.getvalue()
    assert len(data) == 22
    blob = encode_zip_to_utf8_blob(data)
    assert_intact(blob, data)


# --- the file API -----------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=archives(max_members=8),
    wrap=st.sampled_from([0, 76, 1000]),
    encrypt=st.booleans(),
)
def test_file_round_trip(
    tmp_path: Path, drawn: tuple[bytes, dict[str, bytes]], wrap: int, encrypt: bool
) -> None:
    """encode_file then decode_file: the archive file comes back byte-identical, the blob
    file equals the in-memory encoding's layout, and no partial files are left over."""
    archive, _ = drawn
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    src, blob, out = work / "in.zip", work / "in.blob", work / "out.zip"
    src.write_bytes(archive)
    key = KEY if encrypt else None
    header = encode_file(src, blob, wrap=wrap, key=key, chunk_size=1024)
    assert header.payload.wrap == wrap
    report = decode_file(blob, out, key=key)
    assert out.read_bytes() == archive
    assert report.outcome == Outcome.INTACT
    assert report.archive_size_actual == len(archive)
    if not encrypt:
        assert blob.read_text("ascii") == encode_zip_to_utf8_blob(archive, wrap=wrap)
    assert sorted(p.name for p in work.iterdir()) == ["in.blob", "in.zip", "out.zip"]


# --- the CLI, in-process ----------------------------------------------------------------


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=archives(max_members=6), wrap=st.sampled_from([0, 64, 76]), urlsafe=st.booleans())
def test_cli_round_trip(
    tmp_path: Path, drawn: tuple[bytes, dict[str, bytes]], wrap: int, urlsafe: bool
) -> None:
    """``taskloop blob encode ARCHIVE -o BLOB`` then ``blob decode BLOB -o OUT`` exit 0
    and OUT is the archive; ``blob verify`` exits 0 too."""
    archive, _ = drawn
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    src, blob, out = work / "in.zip", work / "in.blob", work / "out.zip"
    src.write_bytes(archive)
    runner = CliRunner()
    args = ["blob", "encode", str(src), "-o", str(blob), "--wrap", str(wrap)]
    if urlsafe:
        args.append("--urlsafe")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["blob", "decode", str(blob), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == archive
    result = runner.invoke(app, ["blob", "verify", str(blob)])
    assert result.exit_code == 0, result.output


def test_cli_round_trip_encrypted(tmp_path: Path, small_zip: bytes) -> None:
    """With a key file (64 hex digits) on both sides."""
    (tmp_path / "in.zip").write_bytes(small_zip)
    (tmp_path / "key").write_text(KEY.hex() + "\n")
    runner = CliRunner()
    key = ["--key-file", str(tmp_path / "key")]
    result = runner.invoke(
        app,
        [*("blob", "encode", str(tmp_path / "in.zip"), "-o", str(tmp_path / "b.txt")), *key],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [*("blob", "decode", str(tmp_path / "b.txt"), "-o", str(tmp_path / "out.zip")), *key],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.zip").read_bytes() == small_zip
    # Without the key: exit status 6, and no output file.
    result = runner.invoke(
        app, ["blob", "decode", str(tmp_path / "b.txt"), "-o", str(tmp_path / "none.zip")]
    )
    assert result.exit_code == 6
    assert not (tmp_path / "none.zip").exists()


# --- inputs people already have ---------------------------------------------------------


def _wrap(text: str, width: int, eol: str = "\n") -> str:
    return "".join(text[i : i + width] + eol for i in range(0, len(text), width))


def _forms(archive: bytes) -> dict[str, str | bytes]:
    std = base64.b64encode(archive).decode("ascii")
    url = base64.urlsafe_b64encode(archive).decode("ascii")
    blob = encode_zip_to_utf8_blob(archive)
    return {
        "base64 unwrapped": std,
        "base64 unwrapped with LF": std + "\n",
        "base64 wrapped 76": _wrap(std, 76),
        "base64 wrapped 64 CRLF": _wrap(std, 64, "\r\n"),
        "base64 unpadded": std.rstrip("="),
        "base64 unpadded wrapped": _wrap(std.rstrip("="), 76),
        "base64 urlsafe": url,
        "base64 urlsafe wrapped unpadded": _wrap(url.rstrip("="), 76),
        "base64 with BOM": "\ufeff" + _wrap(std, 76),
        "base64 surrounded by blank lines": "\n\n" + _wrap(std, 76) + "\n\n",
        "data URL": "data:application/zip;base64," + std,
        "data URL upper case": "DATA:application/zip;BASE64," + std,
        "data URL wrapped": "data:application/zip;base64," + _wrap(std, 76),
        "blob with BOM": "\ufeff" + blob,
        "blob with CRLF": blob.replace("\n", "\r\n"),
        "blob with BOM and CRLF": "\ufeff" + blob.replace("\n", "\r\n"),
        "blob bytes with BOM": b"\xef\xbb\xbf" + blob.encode("ascii"),
        "raw zip": archive,
    }


FORM_NAMES = list(_forms(b"PK\x05\x06" + bytes(18)))


@pytest.mark.parametrize("form", FORM_NAMES)
def test_inputs_people_already_have(
    small_zip: bytes, small_files: dict[str, bytes], form: str
) -> None:
    blob = _forms(small_zip)[form]
    assert_intact(blob, small_zip)
    if isinstance(blob, str):
        assert_intact(blob.encode("utf-8"), small_zip)
    assert members(decode_utf8_blob_to_zip(blob)) == small_files
    # inspect lists the members of every form (from the manifest or the directory).
    assert [m.name for m in inspect_blob(blob).members] == list(small_files)


@settings(max_examples=40, deadline=None)
@given(drawn=archives(max_members=6), form=st.sampled_from(FORM_NAMES))
def test_inputs_people_already_have_any_archive(
    drawn: tuple[bytes, dict[str, bytes]], form: str
) -> None:
    archive, files = drawn
    blob = _forms(archive)[form]
    assert decode_utf8_blob_to_zip(blob) == archive
    report = verify_blob(blob)
    assert report.outcome.value == "intact"
    assert all(m.status == MemberStatus.INTACT for m in report.members)
    assert sorted(m.name for m in report.members) == sorted(files)


def test_inputs_people_already_have_in_files(tmp_path: Path, small_zip: bytes) -> None:
    """The same forms as files through decode_file."""
    for i, (form, blob) in enumerate(_forms(small_zip).items()):
        path = tmp_path / f"in{i}.txt"
        path.write_bytes(blob if isinstance(blob, bytes) else blob.encode("utf-8"))
        out = tmp_path / f"out{i}.zip"
        decode_file(path, out)
        assert out.read_bytes() == small_zip, form
