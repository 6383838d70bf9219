"""Blob codec throughput and memory, next to the same work done the plain stdlib way.

Issue 2 asks for encode and decode+verify throughput on a 256 MiB archive, measured in the
same run as the plain way (stdlib ``base64`` + ``zipfile`` + ``hashlib``), the target being
at least 2x the plain way, and for bounded memory: streaming a 2 GiB archive must not grow
RSS by more than 100 MB.

The script builds a deterministic archive (seeded), then times, interleaved, each
taskloop operation and its plain equivalent, and prints a table of medians::

    python benchmarks/blob_throughput.py                      # 256 MiB, 3 repeats, memory
    python benchmarks/blob_throughput.py --size 64M --skip-memory

Throughput is counted on archive bytes (MiB = 2**20 bytes) whatever the direction, so
encode and decode figures compare directly. The memory check runs each file-to-file
operation in a fresh subprocess and reports its peak RSS over the RSS it had right after
importing taskloop.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import hashlib
import io
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from machine import describe, work_dir  # benchmarks/machine.py, beside this script

MiB = 1 << 20
GiB = 1 << 30
MEMORY_LIMIT = 100 * 10**6  # "100 MB", read strictly as 10^8 bytes
TARGET_RATIO = 2.0
FILE_CHUNK = MiB  # the plain way is fastest with 1 MiB steps (cache-sized)
ENC_CHUNK = 57 * (FILE_CHUNK // 57)  # whole 76-column lines for base64.encodebytes
DEC_CHUNK = 77 * (FILE_CHUNK // 77)  # whole 76-column lines plus LF
ZIP_DATE = (2024, 1, 1, 0, 0, 0)

TASKS = ("qa", "summarize", "classify", "translate", "extract", "rewrite", "rank", "chat")
LANGS = ("en", "de", "fr", "es", "pt", "it", "nl", "sv")


def log(message: str) -> None:
    print(message, flush=True)


def parse_size(text: str) -> int:
    """'256', '256M', '256MiB', '2G', '512K' -> bytes (binary units; a bare number is MiB)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    unit = MiB
    if value and value[-1] in units:
        unit = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 2G)") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return int(number * unit)


def human(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


# --- deterministic test data --------------------------------------------------------------


class TextGen:
    """Pseudo-text with a Zipf-like vocabulary of ~15k invented words.

    Records are drawn from a pool of 60k distinct sentences, so text inside any 32 KiB
    deflate window rarely repeats and compresses about like real prose (~3x at level 6).
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        r = self.rng
        onsets = [*"bcdfghjklmnprstvwz", "br", "ch", "dr", "fl", "gr", "kr", "pl", "sh", "st"]
        vowels = [*"aeiouaeio", "ai", "ea", "ou"]
        codas = ["", "", "", "n", "s", "r", "t", "l", "nd", "st", "ng", "x"]
        words: set[str] = set()
        while len(words) < 15_000:
            syllables = r.choice((1, 1, 2, 2, 2, 3, 3, 4))
            words.add(
                "".join(r.choice(onsets) + r.choice(vowels) for _ in range(syllables))
                + r.choice(codas)
            )
        vocab = sorted(words)
        r.shuffle(vocab)
        cum = list(itertools.accumulate(1.0 / (rank + 2.7) for rank in range(len(vocab))))
        self.vocab = vocab
        sentences = []
        for _ in range(60_000):
            n = r.randint(5, 26)
            tokens = r.choices(vocab, cum_weights=cum, k=n)
            if r.random() < 0.3:
                tokens.insert(r.randrange(n), str(r.randint(0, 99_999)))
            if r.random() < 0.4:
                tokens[r.randrange(1, n)] += ","
            text = " ".join(tokens)
            sentences.append(text[0].upper() + text[1:] + r.choice(".....?!:"))
        self.sentences = sentences

    def _para(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(self.sentences, k=self.rng.randint(lo, hi)))

    def jsonl(self, nbytes: int, first_id: int) -> tuple[bytes, int]:
        """Task records (one JSON object a line) totalling at least ``nbytes``."""
        r = self.rng
        lines: list[str] = []
        size = 0
        i = first_id
        while size < nbytes:
            record = {
                "id": f"task-{i:09d}",
                "task": r.choice(TASKS),
                "lang": r.choice(LANGS),
                "prompt": self._para(1, 4),
                "context": self._para(0, 7),
                "answer": self._para(1, 3),
                "score": round(r.random(), 4),
                "tokens": r.randint(12, 4096),
                "tags": r.sample(self.vocab[:400], r.randint(0, 3)),
                "created": f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
                f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
            }
            line = json.dumps(record, separators=(",", ":")) + "\n"
            lines.append(line)
            size += len(line)
            i += 1
        return "".join(lines).encode(), i

    def note(self, nbytes: int) -> bytes:
        """A Markdown note of about ``nbytes``."""
        parts = [f"# {self.rng.choice(self.sentences)}\n"]
        size = len(parts[0])
        while size < nbytes:
            para = self._para(2, 8) + "\n\n"
            parts.append(para)
            size += len(para)
        return "".join(parts).encode()


def random_bytes(seed: int, label: str, n: int) -> bytes:
    """Seeded incompressible bytes, fast: the AES-256-CTR keystream of a derived key."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(f"taskloop-bench:{seed}:{label}".encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(n)) + encryptor.finalize()


def _zinfo(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    return info


@dataclass
class Mix:
    """What the generated archive holds, and the SHA-256 of every member (the plain
    way's manifest)."""

    path: str
    size: int = 0
    sha256: str = ""
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, name: str, data: bytes, archive_bytes: int) -> None:
        entry = self.kinds.setdefault(kind, {"members": 0, "bytes": 0, "archive_bytes": 0})
        entry["members"] += 1
        entry["bytes"] += len(data)
        entry["archive_bytes"] += archive_bytes
        self.members[name] = hashlib.sha256(data).hexdigest()

    def describe(self) -> list[str]:
        lines = []
        for kind, e in self.kinds.items():
            share = e["archive_bytes"] / self.size
            ratio = e["bytes"] / max(e["archive_bytes"], 1)
            lines.append(
                f"  {kind:40s} {e['members']:6d} members  {human(e['bytes']):>12s} data  "
                f"{human(e['archive_bytes']):>12s} in archive ({share:5.1%}, {ratio:.2f}x)"
            )
        return lines


KIND_SHARDS = "tasks/*.jsonl (deflate, JSONL records)"
KIND_NOTES = "notes/*.md (deflate, small text files)"
KIND_BINARY = "assets/*.bin (stored, random bytes)"
KIND_MANIFEST = "manifest.json (deflate)"


def build_archive(path: Path, size: int, seed: int) -> Mix:
    """A realistic task archive of about ``size`` bytes.

    By archive bytes: ~65% deflate-compressed JSONL task shards (level 6, the zipfile
    default), ~30% stored random binaries, ~5% small deflated Markdown notes, and a
    manifest.json.
    """
    started = time.perf_counter()
    gen = TextGen(seed)
    rng = random.Random(seed + 1)
    mix = Mix(str(path))
    targets = {KIND_SHARDS: 0.65, KIND_BINARY: 0.30, KIND_NOTES: 0.05}
    written = dict.fromkeys(targets, 0)
    shard_max = min(12 * MiB, max(256 << 10, size // 6))
    binary_max = min(16 * MiB, max(64 << 10, size // 16))
    counters = dict.fromkeys(targets, 0)
    next_id = 0
    next_report = size / 10
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        assert zf.fp is not None
        while zf.fp.tell() < size:
            total = max(zf.fp.tell(), 1)
            kind = max(targets, key=lambda k: targets[k] * total - written[k])
            n = counters[kind]
            counters[kind] += 1
            left = max(size - zf.fp.tell(), 1 << 10)  # the last members shrink to fit
            if kind == KIND_SHARDS:
                name = f"tasks/shard-{n:05d}.jsonl"
                want = min(rng.randint(shard_max // 6, shard_max), left * 3)
                data, next_id = gen.jsonl(want, next_id)
                method = zipfile.ZIP_DEFLATED
            elif kind == KIND_BINARY:
                name = f"assets/blob-{n:05d}.bin"
                want = min(rng.randint(binary_max // 16, binary_max), left)
                data = random_bytes(seed, name, want)
                method = zipfile.ZIP_STORED
            else:
                name = f"notes/{n // 100:03d}/note-{n:06d}.md"
                data = gen.note(rng.randint(1 << 10, 48 << 10))
                method = zipfile.ZIP_DEFLATED
            before = zf.fp.tell()
            zf.writestr(_zinfo(name, method), data)
            used = zf.fp.tell() - before
            written[kind] += used
            mix.add(kind, name, data, used)
            if zf.fp.tell() >= next_report:
                log(
                    f"  generating: {human(zf.fp.tell())} of {human(size)} "
                    f"({time.perf_counter() - started:.1f} s)"
                )
                next_report += size / 10
        manifest = json.dumps(
            {
                "name": "bench-tasks",
                "seed": seed,
                "members": {k: {"count": v} for k, v in counters.items()},
            },
            indent=2,
        ).encode()
        before = zf.fp.tell()
        zf.writestr(_zinfo("manifest.json", zipfile.ZIP_DEFLATED), manifest)
        mix.add(KIND_MANIFEST, "manifest.json", manifest, zf.fp.tell() - before)
    mix.size = path.stat().st_size
    mix.sha256 = sha256_file(path)
    log(f"  built {path.name}: {human(mix.size)} in {time.perf_counter() - started:.1f} s")
    return mix


def archive_for(work: Path, size: int, seed: int) -> Mix:
    """The benchmark archive, reused when a kept work dir already has it."""
    path = work / f"archive-{size}-seed{seed}.zip"
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        mix = Mix(**json.loads(sidecar.read_text()))
        if path.stat().st_size == mix.size:
            log(f"  reusing {path} ({human(mix.size)})")
            return mix
    mix = build_archive(path, size, seed)
    sidecar.write_text(json.dumps(asdict(mix)))
    return mix


def build_big_archive(path: Path, size: int, seed: int) -> None:
    """A large archive, fast: ~90% stored random members, ~10% deflated text (level 1)."""
    started = time.perf_counter()
    gen = TextGen(seed)
    pool, _ = gen.jsonl(24 * MiB, 0)
    member = 64 * MiB
    next_report = size / 8
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        assert zf.fp is not None
        i = 0
        while zf.fp.tell() < size:
            if i % 10 == 5:
                cut = (i * 7919 * 4099) % len(pool)
                info = _zinfo(f"tasks/big-{i:04d}.jsonl", zipfile.ZIP_DEFLATED)
                zf.writestr(info, pool[cut:] + pool[:cut], compresslevel=1)
            else:
                name = f"assets/big-{i:04d}.bin"
                n = min(member, max(size - zf.fp.tell(), 1 << 20))
                zf.writestr(_zinfo(name, zipfile.ZIP_STORED), random_bytes(seed, name, n))
            i += 1
            if zf.fp.tell() >= next_report:
                log(
                    f"  generating: {human(zf.fp.tell())} of {human(size)} "
                    f"({time.perf_counter() - started:.1f} s)"
                )
                next_report += size / 8
    elapsed = time.perf_counter() - started
    log(f"  built {path.name}: {human(path.stat().st_size)} in {elapsed:.1f} s")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(FILE_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --- the plain way (stdlib base64 + zipfile + hashlib) -------------------------------------


class Mismatch(Exception):
    pass


def _plain_header(sha: str, size: int, members: dict[str, str]) -> bytes:
    header = {"archive": {"size": size, "sha256": sha}, "members": members}
    return (json.dumps(header) + "\n").encode()


def _member_digests(zf: zipfile.ZipFile) -> dict[str, str]:
    """Read every member in 1 MiB steps (zipfile checks its CRC-32 at the end) and SHA-256 it."""
    members = {}
    for info in zf.infolist():
        h = hashlib.sha256()
        with zf.open(info) as fh:
            while chunk := fh.read(FILE_CHUNK):
                h.update(chunk)
        members[info.filename] = h.hexdigest()
    return members


def plain_encode(data: bytes) -> str:
    """Check every member (zipfile checks CRC-32 on read), SHA-256 it for the manifest,
    SHA-256 the archive, base64 in 76-column lines.

    ``base64.encodebytes`` runs 1 MiB at a time: on the whole archive at once it is 2-3x
    slower (it builds a list of one small bytes object per line first).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = _member_digests(zf)
    header = _plain_header(hashlib.sha256(data).hexdigest(), len(data), members)
    view = memoryview(data)
    lines = [base64.encodebytes(view[i : i + ENC_CHUNK]) for i in range(0, len(data), ENC_CHUNK)]
    return b"".join([header, *lines]).decode("ascii")


def plain_b64encode(data: bytes) -> bytes:
    """The generous baseline: unwrapped base64 and nothing else (no checks, no manifest)."""
    return base64.b64encode(data)


def _check_members(zf: zipfile.ZipFile, mix: Mix) -> None:
    """Read (and so CRC-check, as ``testzip`` does) and SHA-256 every member, once.

    ``testzip()`` followed by a second pass for the SHA-256 would inflate everything twice;
    one pass is the same checking, and the faster plain way.
    """
    if _member_digests(zf) != mix.members:
        raise Mismatch("a member's SHA-256 or the member list differs from the manifest")


def plain_verify(text: str, mix: Mix) -> None:
    """Decode, SHA-256 the archive, then read + CRC-check + SHA-256 every member."""
    data = base64.b64decode(text)
    if len(data) != mix.size or hashlib.sha256(data).hexdigest() != mix.sha256:
        raise Mismatch("archive SHA-256 mismatch")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        _check_members(zf, mix)


def plain_b64decode(text: str) -> bytes:
    """The generous baseline: base64 decoding and nothing else."""
    return base64.b64decode(text)


def plain_encode_file(zip_path: Path, out: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        members = _member_digests(zf)
    header = _plain_header(sha256_file(zip_path), zip_path.stat().st_size, members)
    with zip_path.open("rb") as src, out.open("wb") as dst:
        dst.write(header)
        while chunk := src.read(ENC_CHUNK):
            dst.write(base64.encodebytes(chunk))


def _plain_decode_to(b64_path: Path, zip_path: Path, mix: Mix) -> None:
    h = hashlib.sha256()
    size = 0
    with b64_path.open("rb") as src, zip_path.open("wb") as dst:
        while chunk := src.read(DEC_CHUNK):
            data = base64.b64decode(chunk)
            h.update(data)
            dst.write(data)
            size += len(data)
    if size != mix.size or h.hexdigest() != mix.sha256:
        raise Mismatch("archive SHA-256 mismatch")


def plain_verify_file(b64_path: Path, mix: Mix) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".zip", dir=b64_path.parent)
    os.close(fd)
    try:
        _plain_decode_to(b64_path, Path(tmp), mix)
        with zipfile.ZipFile(tmp) as zf:
            _check_members(zf, mix)
    finally:
        Path(tmp).unlink()


def plain_decode_file(b64_path: Path, out: Path, mix: Mix) -> None:
    """Decode to a file, check the archive SHA-256, read the central directory: the same
    guarantee as ``decode_file``, whose archive hash matches the manifest's."""
    _plain_decode_to(b64_path, out, mix)
    with zipfile.ZipFile(out) as zf:
        zf.infolist()


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Row:
    operation: str
    baseline: str
    taskloop: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_throughput(mix: Mix, work: Path, repeats: int) -> list[Row]:
    from taskloop.blob import (
        decode_file,
        encode_file,
        encode_zip_to_utf8_blob,
        verify_blob,
        verify_file,
    )

    archive = Path(mix.path)
    data = archive.read_bytes()
    log("  preparing inputs (one untimed run of each side) ...")
    text = encode_zip_to_utf8_blob(data)
    report = verify_blob(text)
    if report.outcome.value != "intact":
        raise SystemExit(f"taskloop verify says {report.outcome}: {report.problems}")
    plain_text = base64.encodebytes(data).decode("ascii")
    plain_verify(plain_text, mix)
    blob_path = work / "bench.blob"
    encode_file(archive, blob_path)
    b64_path = work / "bench.b64"
    b64_path.write_bytes(plain_text.encode("ascii"))
    log(
        f"  taskloop blob: {human(len(text))} (header {len(text) - len(plain_text):,} bytes); "
        f"plain base64: {human(len(plain_text))}"
    )
    out_t = work / "out-taskloop"
    out_p = work / "out-plain"

    def clean() -> None:
        for p in (out_t, out_p):
            p.unlink(missing_ok=True)

    def check_decoded(path: Path) -> None:
        if path.stat().st_size != mix.size or sha256_file(path) != mix.sha256:
            raise SystemExit(f"{path} does not hold the archive")

    rows = [
        (
            Row("encode, in memory", "zipfile read+CRC, sha256 members+archive, encodebytes"),
            lambda: encode_zip_to_utf8_blob(data),
            lambda: plain_encode(data),
        ),
        (
            Row("encode, in memory", "b64encode only (no checks, unwrapped)"),
            lambda: encode_zip_to_utf8_blob(data),
            lambda: plain_b64encode(data),
        ),
        (
            Row("decode+verify, in memory", "b64decode, sha256 archive, zipfile read+CRC+sha256"),
            lambda: verify_blob(text),
            lambda: plain_verify(plain_text, mix),
        ),
        (
            Row("decode+verify, in memory", "b64decode only (no checks)"),
            lambda: verify_blob(text),
            lambda: plain_b64decode(plain_text),
        ),
        (
            Row("encode_file", "same as in-memory plain encode, file to file"),
            lambda: encode_file(archive, out_t),
            lambda: plain_encode_file(archive, out_p),
        ),
        (
            Row("verify_file", "b64decode to temp file + sha256, zipfile read+CRC+sha256"),
            lambda: verify_file(blob_path),
            lambda: plain_verify_file(b64_path, mix),
        ),
        (
            Row("decode_file", "b64decode to file + sha256 archive, read directory"),
            lambda: decode_file(blob_path, out_t),
            lambda: plain_decode_file(b64_path, out_p, mix),
        ),
    ]
    for rep in range(repeats):
        log(f"  repeat {rep + 1}/{repeats}")
        for row, ours, theirs in rows:
            # Alternate which side goes first, so cache and clock drift hit both.
            order = [("taskloop", ours), ("plain", theirs)]
            if rep % 2:
                order.reverse()
            for side, fn in order:
                getattr(row, side).append(timed(fn))
                if row.operation == "decode_file":
                    check_decoded(out_t if side == "taskloop" else out_p)
                # Each side starts with the other's output gone: a write into page cache
                # that was just freed is much cheaper than one that needs fresh memory.
                clean()
            log(
                f"    {row.operation:26s} taskloop {row.taskloop[-1]:7.3f} s   "
                f"plain {row.plain[-1]:7.3f} s   ({row.baseline})"
            )
    for p in (blob_path, b64_path):
        p.unlink(missing_ok=True)
    return [row for row, _, _ in rows]


def print_table(rows: list[Row], size: int) -> list[str]:
    lines = [
        "| operation | plain way | taskloop MiB/s | plain MiB/s | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        t, p = median(row.taskloop), median(row.plain)
        lines.append(
            f"| {row.operation} | {row.baseline} | {size / MiB / t:,.0f} | "
            f"{size / MiB / p:,.0f} | {p / t:.2f}x |"
        )
    for line in lines:
        log(line)
    return lines


# --- memory ---------------------------------------------------------------------------------


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def _maxrss() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


def _hwm() -> int | None:
    """The kernel's peak RSS of this process (VmHWM), or None where there is none."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0), so it measures what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def memory_child(op: str, a: str, b: str) -> int:
    """Run one streaming operation in this (fresh) process and print its RSS figures."""
    import taskloop.blob as tb

    gc.collect()
    base = _rss()
    base_max = _maxrss()
    hwm_reset = _reset_hwm()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    if op == "encode_file":
        tb.encode_file(a, b)
    elif op == "verify_file":
        report = tb.verify_file(a)
        if report.outcome.value != "intact":
            raise SystemExit(f"verify: {report.outcome}")
    elif op == "decode_file":
        tb.decode_file(a, b)
    else:
        raise SystemExit(f"unknown operation {op}")
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak, _rss())
    result = {
        "op": op,
        "seconds": seconds,
        "rss_after_import": base,
        "maxrss_after_import": base_max,
        "peak_sampled": peak,
        "maxrss": _maxrss(),
        "hwm": _hwm() if hwm_reset else None,
    }
    print("MEMORY " + json.dumps(result), flush=True)
    return 0


# ru_maxrss survives exec: a child started straight from this (large) process would report
# this process's peak. A small launcher in between keeps the child's ru_maxrss its own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def memory_growth(r: dict[str, float]) -> tuple[float, str]:
    """Peak RSS growth over the RSS after import: the largest of the valid measures."""
    base = r["rss_after_import"]
    measures = {"sampled": r["peak_sampled"] - base}
    if r["maxrss_after_import"] <= base + 8 * MiB:  # else ru_maxrss was inherited
        measures["ru_maxrss"] = r["maxrss"] - base
    if r.get("hwm") is not None:
        measures["VmHWM"] = r["hwm"] - base
    growth = max(measures.values())
    detail = ", ".join(f"{k} {human(v)}" for k, v in measures.items())
    return growth, detail


def pick_space(candidates: list[Path], needed: int) -> Path | None:
    for directory in candidates:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(directory).free >= needed:
                return directory
    return None


def run_memory(work: Path, size: int, seed: int) -> list[dict[str, float]]:
    # archive + blob (4/3) + decoded copy + verify's temporary archive, and 1 GiB to spare
    needed = int(size * (1 + 4 / 3 + 1 + 1)) + GiB
    candidates = [work, Path(tempfile.gettempdir()), Path.cwd()]
    where = pick_space(candidates, needed)
    if where is None:
        log(f"  SKIPPED: no directory among {candidates} has {human(needed)} free")
        return []
    mem = Path(tempfile.mkdtemp(prefix="blob-memory-", dir=where))
    log(f"  files in {mem} ({human(shutil.disk_usage(mem).free)} free, {human(needed)} needed)")
    results = []
    try:
        archive = mem / "big.zip"
        blob = mem / "big.blob"
        out = mem / "big-decoded.zip"
        build_big_archive(archive, size, seed)
        size = archive.stat().st_size
        env = dict(os.environ, TMPDIR=str(mem))  # verify_file's temporary archive goes here
        for op, a, b in (
            ("encode_file", archive, blob),
            ("verify_file", blob, ""),
            ("decode_file", blob, out),
        ):
            child = [sys.executable, __file__, "--memory-child", op, str(a), str(b)]
            proc = subprocess.run(
                [sys.executable, "-c", LAUNCHER, *child],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")), None)
            if proc.returncode != 0 or line is None:
                log(proc.stdout + proc.stderr)
                raise SystemExit(f"memory child {op} failed (exit {proc.returncode})")
            r = json.loads(line.removeprefix("MEMORY "))
            growth, detail = memory_growth(r)
            r["growth"] = growth
            r["mib_s"] = size / MiB / r["seconds"]
            results.append(r)
            verdict = "under" if growth <= MEMORY_LIMIT else "OVER"
            log(
                f"  {op:12s} {r['seconds']:6.1f} s ({r['mib_s']:5.0f} MiB/s)  RSS after import "
                f"{human(r['rss_after_import'])}; peak growth {human(growth)} ({detail}): "
                f"{verdict} 100 MB"
            )
        if out.stat().st_size != size:
            raise SystemExit("decode_file output has the wrong size")
    finally:
        shutil.rmtree(mem, ignore_errors=True)
        log(f"  removed {mem}")
    return results


# --- main -----------------------------------------------------------------------------------


def machine() -> list[str]:
    return describe(("pybase64", "isal", "cryptography"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Blob codec throughput (encode, decode+verify; in memory and file to "
        "file) next to the plain stdlib way in the same run, and peak memory of streaming a "
        "large archive.",
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=256 * MiB,
        help="archive size, e.g. 256M or 1G (binary units; a bare number is MiB; default 256M)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each case (default 3)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where files go (default: a temporary directory, removed afterwards); a given "
        "directory is kept and its archive reused by later runs",
    )
    parser.add_argument("--seed", type=int, default=2024, help="data seed (default 2024)")
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip the large-archive memory check"
    )
    parser.add_argument(
        "--memory-size",
        type=parse_size,
        default=2 * GiB,
        help="archive size for the memory check (default 2G)",
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(*args.memory_child)
    for line in machine():
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    with work_dir(args.work_dir) as work:
        log(f"\n== archive ({human(args.size)}, seed {args.seed}) in {work}")
        mix = archive_for(work, args.size, args.seed)
        log(f"archive: {human(mix.size)}, {len(mix.members)} members; mix by archive bytes:")
        for line in mix.describe():
            log(line)
        log(f"\n== throughput: median of {args.repeats}, MiB/s of archive bytes")
        rows = run_throughput(mix, work, args.repeats)
        log("")
        print_table(rows, mix.size)
        for row in rows:
            if "only" in row.baseline:
                continue
            ratio = median(row.plain) / median(row.taskloop)
            verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
            log(f"target {TARGET_RATIO:g}x vs plain, {row.operation}: {ratio:.2f}x {verdict}")
        if not args.skip_memory:
            log(f"\n== memory: streaming a {human(args.memory_size)} archive, fresh process each")
            results = run_memory(work, args.memory_size, args.seed)
            if results:
                worst = max(r["growth"] for r in results)
                verdict = "under" if worst <= MEMORY_LIMIT else "OVER"
                log(f"memory: worst peak RSS growth {human(worst)}: {verdict} 100 MB")
        log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
