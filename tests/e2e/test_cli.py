"""The CLI end to end, in real subprocesses: exit statuses, outputs, messages, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_zip, read_zip

FILES = {
    "manifest.json": b'{"name": "cli"}',
    "data/a.jsonl": b'{"q": 1}\n' * 200,
    "data/b.bin": bytes(range(256)) * 20,
}


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "taskloop", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "in.zip").write_bytes(make_zip(FILES))
    return tmp_path


def damage_member(blob: Path, archive: bytes, name: str) -> None:
    """Flip one payload character inside ``name``'s compressed data."""
    text = blob.read_text()
    pos = archive.index(name.encode()) - 30
    data = pos + 30 + len(name) + int.from_bytes(archive[pos + 28 : pos + 30], "little") + 3
    start = text.index("\n", text.index("\nC ") + 1) + 1
    char = 4 * (data // 3) + 1
    at = start + char + char // 76
    blob.write_text(text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :])


def test_version_and_help_on_every_command():
    assert run("--version").stdout.strip() == "taskloop 0.1.0"
    for args in (
        [],
        ["demo"],
        ["blob"],
        *(
            ["blob", c]
            for c in ("encode", "decode", "verify", "repair", "extract", "inspect", "keygen")
        ),
    ):
        result = run(*args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage:" in result.stdout
    assert "5  unsafe archive" in run("--help").stdout


def test_round_trip_through_every_command(work: Path):
    enc = run("blob", "encode", "in.zip", "-o", "x.blob", cwd=work)
    assert enc.returncode == 0, enc.stderr
    assert "3 members" in enc.stdout
    ins = run("blob", "inspect", "x.blob", "--json", cwd=work)
    assert [m["name"] for m in json.loads(ins.stdout)["members"]] == list(FILES)
    ver = run("blob", "verify", "x.blob", cwd=work)
    assert ver.returncode == 0 and ": intact" in ver.stdout
    dec = run("blob", "decode", "x.blob", "-o", "out.zip", cwd=work)
    assert dec.returncode == 0, dec.stderr
    assert (work / "out.zip").read_bytes() == (work / "in.zip").read_bytes()
    ext = run("blob", "extract", "x.blob", "-d", "tree", cwd=work)
    assert ext.returncode == 0, ext.stderr
    assert (work / "tree/data/b.bin").read_bytes() == FILES["data/b.bin"]


def test_damage_statuses_reports_and_no_tracebacks(work: Path):
    archive = (work / "in.zip").read_bytes()
    assert run("blob", "encode", "in.zip", "-o", "x.blob", cwd=work).returncode == 0
    damage_member(work / "x.blob", archive, "data/b.bin")

    ver = run("blob", "verify", "x.blob", "--json", cwd=work)
    assert ver.returncode == 4
    assert {m["name"]: m["status"] for m in json.loads(ver.stdout)["members"]}[
        "data/b.bin"
    ] == "damaged"

    dec = run("blob", "decode", "x.blob", "-o", "out.zip", cwd=work)
    assert dec.returncode == 4
    assert "error[blob.checksum]" in dec.stderr and "data/b.bin" in dec.stderr
    assert "hint:" in dec.stderr and "Traceback" not in dec.stderr
    assert not (work / "out.zip").exists()

    rep = run("blob", "repair", "x.blob", "-o", "fixed.zip", "--report", "r.json", cwd=work)
    assert rep.returncode == 3, rep.stderr
    assert "repaired with losses" in rep.stdout
    report = json.loads((work / "r.json").read_text())
    assert report["counts"] == {"intact": 2, "recovered": 0, "damaged": 1, "missing": 0}
    assert set(read_zip((work / "fixed.zip").read_bytes())) == {"manifest.json", "data/a.jsonl"}

    again = run("blob", "decode", "x.blob", "-o", "out2.zip", "--repair", cwd=work)
    assert again.returncode == 3


def test_lost_critical_member_fails_with_status_4_and_writes_nothing(work: Path):
    archive = (work / "in.zip").read_bytes()
    run("blob", "encode", "in.zip", "-o", "x.blob", cwd=work)
    damage_member(work / "x.blob", archive, "manifest.json")
    rep = run("blob", "repair", "x.blob", "-o", "fixed.zip", "--report", "r.json", cwd=work)
    assert rep.returncode == 4
    assert "error[blob.critical_damaged]" in rep.stderr
    assert not (work / "fixed.zip").exists()
    assert json.loads((work / "r.json").read_text())["outcome"] == "failed"


def test_unsafe_archive_exits_5_and_extracts_nothing(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escaped.txt", "gotcha")
    result = run("blob", "extract", "evil.zip", "-d", "target", cwd=tmp_path)
    assert result.returncode == 5
    assert "error[blob.unsafe.path]" in result.stderr and "'../escaped.txt'" in result.stderr
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").iterdir())


def test_keys_missing_wrong_and_right(work: Path):
    assert run("blob", "keygen", "-o", "k1", cwd=work).returncode == 0
    assert run("blob", "keygen", "-o", "k2", cwd=work).returncode == 0
    assert oct((work / "k1").stat().st_mode & 0o777) == "0o600"
    assert run("blob", "encode", "in.zip", "-o", "x.blob", "-k", "k1", cwd=work).returncode == 0
    none = run("blob", "decode", "x.blob", "-o", "o.zip", cwd=work)
    assert none.returncode == 6 and "error[blob.key_required]" in none.stderr
    wrong = run("blob", "decode", "x.blob", "-o", "o.zip", "-k", "k2", cwd=work)
    assert wrong.returncode == 6 and "error[blob.wrong_key]" in wrong.stderr
    right = run("blob", "decode", "x.blob", "-o", "o.zip", "-k", "k1", cwd=work)
    assert right.returncode == 0, right.stderr
    env_key = run(
        "blob",
        "verify",
        "x.blob",
        env={"TASKLOOP_BLOB_KEY": (work / "k1").read_text().strip()},
        cwd=work,
    )
    assert env_key.returncode == 0, env_key.stderr


def test_file_and_usage_errors(tmp_path: Path):
    missing = run("blob", "verify", "nope.blob", cwd=tmp_path)
    assert missing.returncode == 7 and "error[io.file]" in missing.stderr
    usage = run("blob", "decode", cwd=tmp_path)
    assert usage.returncode == 2
    bad = tmp_path / "bad.blob"
    bad.write_text("UEsDBBQAAAA*AAAA\n")
    invalid = run("blob", "decode", "bad.blob", "-o", "o.zip", cwd=tmp_path)
    assert invalid.returncode == 4
    assert "error[blob.invalid_base64]" in invalid.stderr and "line 1, column 12" in invalid.stderr


def test_json_logs_have_one_record_per_step(work: Path):
    run("blob", "encode", "in.zip", "-o", "x.blob", cwd=work)
    result = run("--log-format", "json", "blob", "verify", "x.blob", cwd=work)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    steps = [r["step"] for r in records if "step" in r]
    assert steps == ["decode", "verify"]
    assert all(isinstance(r["duration_ms"], float) for r in records)
    assert records[0]["out_bytes"] == (work / "in.zip").stat().st_size


def test_demo_main_job(tmp_path: Path):
    result = run("demo", "--out", "d", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo ok" in result.stdout
    report = json.loads((tmp_path / "d/repair-report.json").read_text())
    assert report["outcome"] == "repaired_with_losses"
    assert [m["name"] for m in report["members"] if m["status"] == "damaged"] == [
        "data/translate.jsonl"
    ]
