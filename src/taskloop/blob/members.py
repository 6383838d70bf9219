"""Inflating and checking members: streamed, limit-enforcing, parallel across threads.

Each member is inflated chunk by chunk (never more than ``OUT_CHUNK`` bytes at a time)
while its CRC-32 and SHA-256 are computed; limits are enforced on the bytes actually
produced, not on what the directory claims. ISA-L (``isal``) inflates and hashes CRC-32
several times faster than stdlib ``zlib`` and, like ``hashlib``, releases the GIL, so
members are checked on all cores with plain threads.
"""

from __future__ import annotations

import bz2
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

from isal import isal_zlib

from taskloop import progress
from taskloop.blob.errors import (
    ArchiveError,
    BlobError,
    LimitExceededError,
    NestingError,
)
from taskloop.blob.safety import Budget, Limits, Located, locate_members
from taskloop.blob.source import ByteSource, FileSource, MemorySource
from taskloop.blob.zipread import (
    BZIP2,
    DEFLATED,
    LOCAL_SIG,
    STORED,
    check_method,
    read_directory,
)

IN_CHUNK = 1 << 20  # compressed bytes read per step
OUT_CHUNK = 4 << 20  # most uncompressed bytes produced per step
STORED_CHUNK = 1 << 20  # bigger pieces are no faster, and each thread's are kept by malloc
NESTED_IN_MEMORY = 16 << 20  # nested archives up to this size are scanned in memory

T = TypeVar("T")
# isal_zlib.error (IsalError) derives from Exception, not from OSError as zlib.error does.
# (isal's stubs type it as an instance, hence the cast.)
_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    EOFError,
    cast("type[Exception]", isal_zlib.error),
)


class MemberDamage(Exception):
    """A member's data cannot be what the directory says (recorded, not raised to users)."""


class Writer(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    return int(isal_zlib.crc32(data, value))


class MemberReader:
    """Iterate over a member's uncompressed bytes, enforcing limits as they are produced.

    Args:
        src: the archive.
        name: member name (for messages).
        method: compression method (stored, deflate or bzip2).
        data_offset: where the compressed data starts.
        compressed_size: bytes of compressed data, or None to read until the stream ends
            (salvage of members with data descriptors; deflate and bzip2 only).
        size: declared uncompressed size, or None when unknown; producing more is damage.
        limits, budget: what may be produced, per member and in total.

    After iteration ``consumed`` is the number of compressed bytes the stream used.
    """

    def __init__(
        self,
        src: ByteSource,
        name: str,
        method: int,
        data_offset: int,
        compressed_size: int | None,
        size: int | None,
        limits: Limits,
        budget: Budget,
    ) -> None:
        self.src = src
        self.name = name
        self.method = method
        self.data_offset = data_offset
        self.compressed_size = compressed_size
        self.size = size
        self.limits = limits
        self.budget = budget
        self.produced = 0
        self.consumed = 0

    def __iter__(self) -> Iterator[bytes | memoryview]:
        if self.method == STORED:
            return self._stored()
        return self._inflated()

    def _account(self, n: int, consumed: int) -> None:
        self.produced += n
        if self.size is not None and self.produced > self.size:
            raise MemberDamage(f"inflates to more than its declared {self.size} bytes")
        if self.produced > self.limits.max_member_size:
            raise LimitExceededError(
                f"member {self.name!r} inflates to more than {self.limits.max_member_size} "
                "bytes, the per-member limit",
                limit="max_member_size",
                value=self.produced,
                maximum=self.limits.max_member_size,
                member=self.name,
                hint="raise --max-member-size if the archive is trusted",
            )
        if self.produced > self.limits.ratio_grace:
            ratio = self.produced / max(consumed, 1)
            if ratio > self.limits.max_ratio:
                raise LimitExceededError(
                    f"member {self.name!r} inflates at a ratio of {ratio:.0f}:1 "
                    f"({consumed} -> {self.produced} bytes so far), over the limit of "
                    f"{self.limits.max_ratio:g}:1; this is how zip bombs work",
                    limit="max_ratio",
                    value=ratio,
                    maximum=self.limits.max_ratio,
                    member=self.name,
                    hint="raise --max-ratio if the archive is trusted",
                )
        self.budget.spend(n, self.name)

    def _stored(self) -> Iterator[bytes | memoryview]:
        if self.compressed_size is None:
            raise MemberDamage("stored member without a known size")
        if self.size is not None and self.size != self.compressed_size:
            raise MemberDamage(
                f"stored member declares {self.compressed_size} bytes stored but "
                f"{self.size} bytes uncompressed"
            )
        pos, end = self.data_offset, self.data_offset + self.compressed_size
        while pos < end:
            chunk = self.src.read_at(pos, min(STORED_CHUNK, end - pos))
            if not chunk:
                raise MemberDamage(
                    f"data cut short after {pos - self.data_offset} of {self.compressed_size} bytes"
                )
            pos += len(chunk)
            self.consumed = pos - self.data_offset
            self._account(len(chunk), self.consumed)
            yield chunk

    def _inflated(self) -> Iterator[bytes]:
        limit = self.compressed_size
        if limit is None:
            limit = self.src.size - self.data_offset
        pos, end = self.data_offset, self.data_offset + limit
        if self.method == DEFLATED:
            yield from self._run(pos, end, _DeflateStep())
        elif self.method == BZIP2:
            yield from self._run(pos, end, _Bzip2Step())
        else:  # pragma: no cover - check_method runs first
            raise MemberDamage(f"unsupported method {self.method}")

    def _run(self, pos: int, end: int, step: _Step) -> Iterator[bytes]:
        fed = 0
        while not step.eof:
            if pos >= end:
                raise MemberDamage(
                    f"compressed stream ends early: all {fed} bytes read and the stream is "
                    "not finished"
                )
            chunk = self.src.read_at(pos, min(IN_CHUNK, end - pos))
            if not chunk:
                raise MemberDamage(f"compressed data cut short after {fed} bytes")
            pos += len(chunk)
            fed += len(chunk)
            data: bytes | memoryview = chunk
            while True:
                try:
                    out = step.feed(data)
                except _INFLATE_ERRORS as exc:
                    raise MemberDamage(f"compressed data is corrupt: {exc}") from None
                data = b""
                self.consumed = fed - step.pending
                if out:
                    self._account(len(out), self.consumed)
                    yield out
                if step.eof or not step.more:
                    break
        self.consumed = fed - step.pending


class _Step(Protocol):
    eof: bool
    pending: int  # fed bytes not yet used (tail or unused data after the end)
    more: bool  # whether calling feed(b"") may yield more output

    def feed(self, data: bytes | memoryview) -> bytes: ...


class _DeflateStep:
    def __init__(self) -> None:
        self._d = isal_zlib.decompressobj(-15)
        self._tail: bytes | memoryview = b""
        self.eof = False
        self.pending = 0
        self.more = False

    def feed(self, data: bytes | memoryview) -> bytes:
        out: bytes = self._d.decompress(data if data else self._tail, OUT_CHUNK)
        self._tail = self._d.unconsumed_tail
        self.eof = bool(self._d.eof)
        self.pending = len(self._tail) + len(self._d.unused_data)
        # Output capped at OUT_CHUNK may leave more to produce even with no input left.
        self.more = not self.eof and (bool(self._tail) or len(out) == OUT_CHUNK)
        return out


class _Bzip2Step:
    def __init__(self) -> None:
        self._d = bz2.BZ2Decompressor()
        self.eof = False
        self.pending = 0
        self.more = False

    def feed(self, data: bytes | memoryview) -> bytes:
        out = self._d.decompress(bytes(data), OUT_CHUNK)
        self.eof = self._d.eof
        self.pending = len(self._d.unused_data)
        self.more = not self.eof and not self._d.needs_input
        return out


@dataclass(frozen=True, slots=True)
class MemberCheck:
    """What inflating one member found. ``problem`` is None when size and CRC-32 match."""

    name: str
    size: int
    crc32: int
    sha256: str
    problem: str | None
    consumed: int = 0
    complete: bool = True  # all data was inflated, so size, CRC-32 and SHA-256 are real

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_member(
    src: ByteSource,
    name: str,
    method: int,
    flags: int,
    data_offset: int,
    compressed_size: int | None,
    size: int | None,
    expected_crc: int | None,
    *,
    limits: Limits,
    budget: Budget,
    depth: int = 0,
    sink: Writer | None = None,
) -> MemberCheck:
    """Inflate one member to its CRC-32 and SHA-256, optionally writing it to ``sink``.

    Damage (bad data, wrong size or CRC) comes back in ``problem``; limit violations,
    nested archives too deep and unsupported methods are raised.
    """
    check_method(name, flags, method)
    reader = MemberReader(src, name, method, data_offset, compressed_size, size, limits, budget)
    crc, sha = 0, hashlib.sha256()
    nested: _Spool | None = None
    first = True
    try:
        for chunk in reader:
            if first and chunk:
                first = False
                if bytes(chunk[:4]) == LOCAL_SIG:
                    if depth + 1 > limits.max_nesting:
                        raise NestingError(
                            f"member {name!r} is a ZIP archive nested {depth + 1} levels deep, "
                            f"over the limit of {limits.max_nesting}",
                            limit="max_nesting",
                            value=depth + 1,
                            maximum=limits.max_nesting,
                            member=name,
                            hint="raise --max-nesting if the archive is trusted",
                        )
                    nested = _Spool()
            crc = crc32(chunk, crc)
            sha.update(chunk)
            if sink is not None:
                sink.write(chunk)
            if nested is not None:
                nested.write(chunk)
        problem = None
        if size is not None and reader.produced != size:
            problem = f"inflates to {reader.produced} bytes, not the declared {size}"
        elif expected_crc is not None and crc != expected_crc:
            problem = f"CRC-32 is {crc:08x}, expected {expected_crc:08x}"
        complete = True
    except MemberDamage as exc:
        problem = str(exc)
        complete = False
        if nested is not None:
            nested.close()
            nested = None
    if nested is not None:
        with nested:
            if problem is None:
                scan_nested(nested.source(), limits=limits, budget=budget, depth=depth + 1)
    return MemberCheck(
        name, reader.produced, crc, sha.hexdigest(), problem, reader.consumed, complete
    )


class _Spool:
    """Bytes of a nested archive: in memory while small, in a temporary file beyond."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._src: FileSource | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None and len(self._buf) + len(data) > NESTED_IN_MEMORY:
            self._file = tempfile.NamedTemporaryFile(prefix="taskloop-nested-")  # noqa: SIM115
            self._file.write(self._buf)
            self._buf = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._buf += data

    def source(self) -> ByteSource:
        if self._file is None:
            return MemorySource(self._buf)
        self._file.flush()
        self._src = FileSource(self._file.name)
        return self._src

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan_nested(src: ByteSource, *, limits: Limits, budget: Budget, depth: int) -> None:
    """Enforce the safety rules inside a nested archive.

    taskloop extracts a nested archive as a file and never unpacks it, so damage inside
    it is not an error of the outer archive; what would harm a recursive unpacker (bombs,
    nesting, unsafe names, links, overlaps) is raised.
    """
    try:
        directory = read_directory(src, max_members=limits.max_members)
        located = locate_members(src, directory, limits)
    except ArchiveError:
        return
    for member in located:
        entry = member.entry
        try:
            check_member(
                src,
                entry.name,
                entry.method,
                entry.flags,
                member.data_offset,
                entry.compressed_size,
                entry.size,
                entry.crc32,
                limits=limits,
                budget=budget,
                depth=depth,
            )
        except ArchiveError:
            continue


def check_located(
    src: ByteSource,
    members: Sequence[Located],
    *,
    limits: Limits,
    budget: Budget | None = None,
    workers: int | None = None,
    extra: Sequence[Callable[[], object]] = (),
) -> tuple[list[MemberCheck], list[object]]:
    """Check every member in parallel; results are in the order of ``members``.

    Args:
        extra: more jobs for the same pool (hashing the whole archive, encoding the
            payload), so they overlap with the member checks; their results come second.
    """
    spent = budget or Budget(limits)

    def one(member: Located) -> MemberCheck:
        entry = member.entry
        return check_member(
            src,
            entry.name,
            entry.method,
            entry.flags,
            member.data_offset,
            entry.compressed_size,
            entry.size,
            entry.crc32,
            limits=limits,
            budget=spent,
        )

    groups = _group([m.entry.size for m in members])

    def batch(group: list[int]) -> Callable[[], object]:
        def run() -> list[MemberCheck]:
            done = [one(members[i]) for i in group]
            progress.advance(sum(members[i].entry.compressed_size for i in group))
            return done

        return run

    progress.start("check members", sum(m.entry.compressed_size for m in members))

    jobs: list[Callable[[], object]] = [*extra, *(batch(g) for g in groups)]
    weights = [src.size] * len(extra) + [
        sum(members[i].entry.size + members[i].entry.compressed_size for i in g) for g in groups
    ]
    results = run_parallel(jobs, weights, workers)
    out: list[MemberCheck | None] = [None] * len(members)
    for group, result in zip(groups, results[len(extra) :], strict=True):
        assert isinstance(result, list)
        for i, check in zip(group, result, strict=True):
            out[i] = check
    return [c for c in out if c is not None], results[: len(extra)]


def _group(sizes: list[int], target: int = 8 << 20) -> list[list[int]]:
    """Batch small members so that thread hand-offs do not dominate many-file archives."""
    groups: list[list[int]] = []
    current: list[int] = []
    current_size = 0
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        current.append(i)
        current_size += sizes[i]
        if current_size >= target or len(current) >= 256:
            groups.append(current)
            current, current_size = [], 0
    if current:
        groups.append(current)
    return groups


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def run_parallel(
    jobs: Sequence[Callable[[], T]], weights: Sequence[int], workers: int | None = None
) -> list[T]:
    """Run jobs on a thread pool, largest first; re-raise the first failure.

    Results come back in the order of ``jobs``.
    """
    workers = workers or default_workers()
    if workers == 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -weights[i])
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {i: pool.submit(jobs[i]) for i in order}
        done, pending = wait(futures.values(), return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            exc = future.exception()
            # Prefer a typed error over an unexpected one when several jobs failed.
            if isinstance(exc, BlobError):
                raise exc
        for future in done:
            exc = future.exception()
            if exc is not None:
                raise exc
        return [futures[i].result() for i in range(len(jobs))]
