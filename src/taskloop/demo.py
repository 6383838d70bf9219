"""The main job on embedded defaults: the sample task blob, checked, repaired and run.

Zip the bundled sample task archive and encode it as a blob. Show the codec on a copy:
damage it the way transport damages text (flipped characters inside one member, CRLF
line ends, a BOM), verify it (damage found and named), repair it (everything else
recovered, the damaged member skipped), and check every recovered file byte for byte.
Then run every task file of the intact blob through :func:`taskloop.pipeline.run` on
the offline defaults: results, report.html and a result blob in ``OUT/run``.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from taskloop.blob import (
    Report,
    encode_file,
    extract_blob,
    repair_file,
    verify_file,
)
from taskloop.blob.format import END_LINE
from taskloop.blob.source import MemorySource
from taskloop.blob.zipread import read_directory, read_local_header
from taskloop.log import step
from taskloop.pipeline import RunResult
from taskloop.pipeline import run as run_tasks
from taskloop.runconfig import RunConfig

SAMPLE_PACKAGE = "taskloop.samples"
DAMAGED_MEMBER = "data/translate.jsonl"


@dataclass(slots=True)
class DemoStep:
    name: str
    result: str
    seconds: float


@dataclass(slots=True)
class DemoResult:
    out_dir: Path
    steps: list[DemoStep] = field(default_factory=list)
    verify_report: Report | None = None
    run: RunResult | None = None
    repair_report: Report | None = None
    ok: bool = False
    failures: list[str] = field(default_factory=list)


def sample_files() -> dict[str, bytes]:
    """The bundled sample archive's files, by archive path."""
    root = resources.files(SAMPLE_PACKAGE).joinpath("tasks")
    out: dict[str, bytes] = {}

    def walk(node: object, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):  # type: ignore[attr-defined]
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.is_file():
                out[f"{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return out


def build_sample_archive() -> bytes:
    """Zip the sample files deterministically (fixed order and timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sample_files().items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def damage_blob(text: bytes, archive: bytes, member: str, flips: int = 3) -> bytes:
    """Change ``flips`` base64 characters inside ``member``'s data, as a noisy channel would.

    The payload is position-stable: archive byte ``i`` lives in base64 character
    ``4 * (i // 3)`` onwards, and every wrapped line adds one LF.
    """
    src = MemorySource(archive)
    entry = next(e for e in read_directory(src).entries if e.name == member)
    data_offset = read_local_header(src, entry).data_offset
    lines = text.split(b"\n")
    first_payload = next(i for i, line in enumerate(lines) if line.startswith(b"C ")) + 1
    wrap = len(lines[first_payload])
    chars = bytearray(b"".join(lines[first_payload:]).split(END_LINE)[0])
    middle = data_offset + entry.compressed_size // 2
    for k in range(flips):
        pos = 4 * ((middle + 3 * k) // 3)
        chars[pos] = ord("B") if chars[pos] != ord("B") else ord("C")
    payload = b"\n".join(bytes(chars[i : i + wrap]) for i in range(0, len(chars), wrap))
    head = b"\n".join(lines[:first_payload])
    return head + b"\n" + payload + b"\n" + END_LINE + b"\n"


def run_demo(out_dir: Path, config: RunConfig | None = None) -> DemoResult:
    """Run the round trip and the tasks in ``out_dir``; check repair and the run.

    Args:
        config: the task run's config (None: offline defaults; ``models`` may name a
            translation or code model to fill the tasks that have none offline).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out_dir)

    with step("demo", out_dir=str(out_dir)):
        t = time.perf_counter()
        archive = build_sample_archive()
        (out_dir / "sample.zip").write_bytes(archive)
        originals = sample_files()
        result.steps.append(
            DemoStep(
                "build",
                f"sample.zip: {len(originals)} files, {len(archive)} bytes",
                time.perf_counter() - t,
            )
        )

        t = time.perf_counter()
        header = encode_file(out_dir / "sample.zip", out_dir / "sample.blob")
        result.steps.append(
            DemoStep(
                "encode",
                f"sample.blob: {header.payload.chars} base64 characters",
                time.perf_counter() - t,
            )
        )

        t = time.perf_counter()
        text = (out_dir / "sample.blob").read_bytes()
        damaged = damage_blob(text, archive, DAMAGED_MEMBER)
        damaged = b"\xef\xbb\xbf" + damaged.replace(b"\n", b"\r\n")  # via a Windows mailer
        (out_dir / "damaged.blob").write_bytes(damaged)
        result.steps.append(
            DemoStep(
                "damage",
                f"damaged.blob: 3 characters changed in {DAMAGED_MEMBER}, CRLF line ends, BOM",
                time.perf_counter() - t,
            )
        )

        t = time.perf_counter()
        verify = verify_file(out_dir / "damaged.blob")
        result.verify_report = verify
        (out_dir / "verify-report.json").write_text(verify.to_json() + "\n", encoding="utf-8")
        bad = [m.name for m in verify.members if not m.verified]
        result.steps.append(
            DemoStep(
                "verify",
                f"{verify.outcome.value}: damaged {', '.join(bad) or 'nothing'}",
                time.perf_counter() - t,
            )
        )

        t = time.perf_counter()
        repair = repair_file(out_dir / "damaged.blob", out_dir / "repaired.zip")
        result.repair_report = repair
        (out_dir / "repair-report.json").write_text(repair.to_json() + "\n", encoding="utf-8")
        counts = repair.counts()
        result.steps.append(
            DemoStep(
                "repair",
                f"{repair.outcome.value}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
                time.perf_counter() - t,
            )
        )

        t = time.perf_counter()
        extracted = out_dir / "extracted"
        extract_blob(out_dir / "repaired.zip", extracted, overwrite=True)
        result.steps.append(DemoStep("extract", f"{extracted}", time.perf_counter() - t))

        t = time.perf_counter()
        result.run = run_tasks(out_dir / "sample.blob", out_dir / "run", config)
        counts = result.run.report.counts
        result.steps.append(
            DemoStep(
                "run tasks",
                f"{result.run.report.examples} items: "
                + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                + f"; report {out_dir / 'run' / 'report.html'}",
                time.perf_counter() - t,
            )
        )
    result.failures = _check(result, originals, extracted)
    result.ok = not result.failures
    return result


def _check(result: DemoResult, originals: dict[str, bytes], extracted: Path) -> list[str]:
    failures: list[str] = []
    if result.verify_report is None or result.verify_report.outcome.value != "damaged":
        failures.append("verify did not report the damage")
    elif [m.name for m in result.verify_report.members if not m.verified] != [DAMAGED_MEMBER]:
        failures.append("verify did not name exactly the damaged member")
    for name, data in originals.items():
        path = extracted / name
        if name == DAMAGED_MEMBER:
            if path.exists():
                failures.append(f"{name} was damaged but extracted")
        elif not path.is_file() or path.read_bytes() != data:
            failures.append(f"{name} is not byte-identical after repair")
    if result.run is None:
        failures.append("the task run did not happen")
    else:
        report = result.run.report
        if report.row_errors:
            failures.append(f"the sample archive has bad rows: {report.row_errors[0]}")
        if {t.task for t in report.tasks} != {"codegen", "qa", "summarize", "translate"}:
            failures.append("not every task ran")
        if report.counts.get("failed"):
            failures.append(f"{report.counts['failed']} items failed")
    return failures
