"""Reading ZIP structure: end records (zip64 too), the central directory and local headers.

Why not ``zipfile``: the codec needs what ``zipfile`` does not expose — every byte span a
member occupies (to reject overlapping entries), the local header checked against the
central one, tolerant parsing of damaged directories for salvage, and one narrow set of
typed errors instead of ``BadZipFile``/``struct.error``/``EOFError``/``ValueError``.
This module parses structure only; inflating members lives in ``members.py``.

Layout reference: PKWARE APPNOTE.TXT 6.3.10, sections 4.3.6-4.3.16 and 4.5.3.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from taskloop.blob.errors import (
    BadNameError,
    LimitExceededError,
    NotAZipError,
    UnsupportedMethodError,
    ZipStructureError,
)
from taskloop.blob.source import ByteSource

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
EOCD64_SIG = b"PK\x06\x06"
EOCD64_LOCATOR_SIG = b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
CENTRAL_HEADER = struct.Struct("<4sBBHHHHHIIIHHHHHII")  # 46 bytes
EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes

STORED = 0
DEFLATED = 8
BZIP2 = 12
SUPPORTED_METHODS = {STORED: "stored", DEFLATED: "deflate", BZIP2: "bzip2"}
METHOD_NAMES = {
    **SUPPORTED_METHODS,
    1: "shrink",
    6: "implode",
    9: "deflate64",
    14: "lzma",
    93: "zstandard",
    95: "xz",
    98: "ppmd",
    99: "AES (WinZip)",
}

FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800

MAX_U16 = 0xFFFF
MAX_U32 = 0xFFFFFFFF
MAX_COMMENT = 0xFFFF
EOCD_SCAN_CHUNK = 1 << 20  # bytes read per step when searching for the end record


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One central directory record, with offsets made absolute in the source."""

    index: int
    name: str
    raw_name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc32: int
    compressed_size: int
    size: int
    header_offset: int
    create_system: int
    external_attr: int
    zip64: bool

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def unix_mode(self) -> int:
        """File type and permission bits when the archiver recorded Unix attributes."""
        return (self.external_attr >> 16) & 0xFFFF if self.create_system in (3, 19) else 0


@dataclass(frozen=True, slots=True)
class ZipDirectory:
    """What the end records and the central directory say about an archive."""

    entries: tuple[ZipEntry, ...]
    cd_offset: int  # absolute
    cd_size: int
    eocd_offset: int  # absolute offset of the (classic) end record
    end: int  # offset just past the end record and its comment
    prefix: int  # bytes before the archive proper (self-extractor stub, junk)
    comment: bytes
    zip64: bool


@dataclass(frozen=True, slots=True)
class LocalHeader:
    offset: int
    flags: int
    method: int
    crc32: int
    compressed_size: int
    size: int
    raw_name: bytes
    extra: bytes
    data_offset: int


def decode_name(raw: bytes, flags: int) -> str:
    """Member names are UTF-8 when flag bit 11 is set, else IBM code page 437."""
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = raw.decode("utf-8", "backslashreplace")
            raise BadNameError(
                f"member name {shown!r} is flagged UTF-8 but byte {exc.start} is not valid UTF-8",
                member=shown,
            ) from None
    return raw.decode("cp437")


def _zip64_extra(extra: bytes, need: list[str], values: dict[str, int]) -> bool:
    """Fill the fields in ``need`` from a zip64 extra block (0x0001); True when found."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            off = 0
            for field in need:
                width = 4 if field == "disk" else 8
                if off + width > len(body):
                    raise ZipStructureError(f"zip64 extra field too short for {field}")
                values[field] = int.from_bytes(body[off : off + width], "little")
                off += width
            return True
        pos += 4 + length
    return False


def _find_eocd(src: ByteSource, *, search_all: bool) -> Iterator[int]:
    """Offsets of end-record signatures, last first (the last one is the real one).

    Lazy, and read backwards a block at a time: an intact archive costs one read of its
    tail even with ``search_all``, and a search of a large input stays in bounded memory.
    """
    size = src.size
    lowest = 0 if search_all else size - min(size, EOCD.size + MAX_COMMENT)
    end = size  # signatures starting before ``end`` are still to be found
    while end > lowest:
        start = max(lowest, end - EOCD_SCAN_CHUNK)
        # Read 3 bytes past ``end`` so that a signature straddling two blocks is found.
        block = bytes(src.read_at(start, min(size, end + len(EOCD_SIG) - 1) - start))
        pos = block.rfind(EOCD_SIG)
        while pos >= 0:
            yield start + pos
            pos = block.rfind(EOCD_SIG, 0, pos)
        end = start


def read_directory(
    src: ByteSource, *, max_members: int | None = None, search_all: bool = False
) -> ZipDirectory:
    """Parse the end records and central directory.

    Args:
        src: the archive bytes.
        max_members: refuse (``LimitExceededError``) before parsing more entries than this.
        search_all: look for the end record in the whole input, not only the last 64 KiB
            (repair uses this to get past large trailing junk).

    Raises:
        NotAZipError: no end-of-central-directory record anywhere it may be.
        ZipStructureError: an end record exists but what it points at is damaged.
    """
    if src.size < EOCD.size:
        raise NotAZipError(
            f"not a ZIP archive: {src.size} bytes is shorter than the smallest ZIP (22 bytes)"
        )
    last_error: ZipStructureError | None = None
    for eocd_offset in _find_eocd(src, search_all=search_all):
        try:
            return _read_from_eocd(src, eocd_offset, max_members)
        except ZipStructureError as exc:
            last_error = exc
    if last_error is None:
        head = bytes(src.read_at(0, 4))
        what = "it starts like a ZIP but" if head == LOCAL_SIG else "it"
        raise NotAZipError(
            f"not a ZIP archive: {what} has no end-of-central-directory record "
            f"(signature PK\\x05\\x06) in its last {min(src.size, EOCD.size + MAX_COMMENT)} bytes",
            hint="if the archive was cut short or its end damaged, try `taskloop blob repair`",
        )
    raise last_error


def _read_from_eocd(src: ByteSource, eocd_offset: int, max_members: int | None) -> ZipDirectory:
    raw = bytes(src.read_at(eocd_offset, EOCD.size))
    if len(raw) < EOCD.size:
        raise ZipStructureError(f"end record at offset {eocd_offset} is cut short")
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = EOCD.unpack(raw)
    end = eocd_offset + EOCD.size + comment_len
    if end > src.size:
        raise ZipStructureError(
            f"end record at offset {eocd_offset} declares a {comment_len}-byte comment "
            f"but only {src.size - eocd_offset - EOCD.size} bytes follow"
        )
    comment = bytes(src.read_at(eocd_offset + EOCD.size, comment_len))
    zip64 = False
    cd_end_actual = eocd_offset  # where the central directory must end
    loc_offset = eocd_offset - EOCD64_LOCATOR.size
    if loc_offset >= 0:
        loc = bytes(src.read_at(loc_offset, EOCD64_LOCATOR.size))
        if loc[:4] == EOCD64_LOCATOR_SIG:
            zip64 = True
            _, _, rec_offset, _ = EOCD64_LOCATOR.unpack(loc)
            rec_pos = _locate_eocd64(src, loc_offset, rec_offset)
            rec = bytes(src.read_at(rec_pos, EOCD64.size))
            (_, _, _, _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset) = EOCD64.unpack(rec)
            cd_end_actual = rec_pos
    if disk != cd_disk or n_disk != n_total:
        raise ZipStructureError(
            f"end record at offset {eocd_offset} describes a multi-disk (split) archive "
            f"(disk {disk}, directory on disk {cd_disk}); taskloop reads single-file archives"
        )
    if max_members is not None and n_total > max_members:
        raise LimitExceededError(
            f"archive declares {n_total} members, over the limit of {max_members}",
            limit="max_members",
            value=n_total,
            maximum=max_members,
            hint="raise --max-members if the archive is trusted",
        )
    cd_start_actual = cd_end_actual - cd_size
    if cd_start_actual < 0:
        raise ZipStructureError(
            f"central directory size {cd_size} is larger than the {cd_end_actual} bytes "
            "before the end record"
        )
    # A prefix (self-extractor stub or junk) shifts every recorded offset by the same amount.
    if cd_size and bytes(src.read_at(cd_offset, 4)) == CENTRAL_SIG and cd_offset <= cd_start_actual:
        prefix = cd_start_actual - cd_offset
        if prefix and bytes(src.read_at(cd_start_actual, 4)) != CENTRAL_SIG:
            prefix = 0
    else:
        prefix = cd_start_actual - cd_offset
    if prefix < 0:
        raise ZipStructureError(
            f"central directory offset {cd_offset} points past where the directory ends "
            f"({cd_start_actual})"
        )
    cd_abs = cd_offset + prefix
    entries = _parse_central(src, cd_abs, cd_size, n_total, prefix)
    return ZipDirectory(
        entries=entries,
        cd_offset=cd_abs,
        cd_size=cd_size,
        eocd_offset=eocd_offset,
        end=end,
        prefix=prefix,
        comment=comment,
        zip64=zip64,
    )


def _locate_eocd64(src: ByteSource, loc_offset: int, rec_offset: int) -> int:
    """The zip64 end record sits just before its locator; the recorded offset may be shifted."""
    for pos in (loc_offset - EOCD64.size, rec_offset):
        if pos >= 0 and bytes(src.read_at(pos, 4)) == EOCD64_SIG:
            return pos
    raise ZipStructureError(
        f"zip64 end locator at offset {loc_offset} points at offset {rec_offset}, "
        "where there is no zip64 end record"
    )


def _parse_central(
    src: ByteSource, cd_abs: int, cd_size: int, n_total: int, prefix: int
) -> tuple[ZipEntry, ...]:
    data = bytes(src.read_at(cd_abs, cd_size))
    if len(data) < cd_size:
        raise ZipStructureError(
            f"central directory at offset {cd_abs} should be {cd_size} bytes; only "
            f"{len(data)} are there"
        )
    entries: list[ZipEntry] = []
    pos = 0
    for index in range(n_total):
        if pos + CENTRAL_HEADER.size > len(data):
            raise ZipStructureError(
                f"central directory ends after {index} of {n_total} entries "
                f"(at offset {cd_abs + pos})"
            )
        fields = CENTRAL_HEADER.unpack_from(data, pos)
        (
            sig,
            _ver,
            system,
            _need,
            flags,
            method,
            dtime,
            ddate,
            crc,
            csize,
            usize,
            nlen,
            elen,
            clen,
            disk,
            _iattr,
            eattr,
            offset,
        ) = fields
        if sig != CENTRAL_SIG:
            raise ZipStructureError(
                f"central directory entry {index} at offset {cd_abs + pos} has a bad signature "
                f"{sig!r}"
            )
        body_end = pos + CENTRAL_HEADER.size + nlen + elen + clen
        if body_end > len(data):
            raise ZipStructureError(
                f"central directory entry {index} at offset {cd_abs + pos} runs past the "
                "directory's end"
            )
        name_start = pos + CENTRAL_HEADER.size
        raw_name = data[name_start : name_start + nlen]
        extra = data[name_start + nlen : name_start + nlen + elen]
        values = {"size": usize, "compressed_size": csize, "offset": offset, "disk": disk}
        need = [
            key
            for key, limit in (
                ("size", MAX_U32),
                ("compressed_size", MAX_U32),
                ("offset", MAX_U32),
                ("disk", MAX_U16),
            )
            if values[key] == limit
        ]
        zip64 = bool(need) and _zip64_extra(extra, need, values)
        if need and not zip64:
            raise ZipStructureError(
                f"central directory entry {index} ({raw_name!r}) needs a zip64 extra field "
                "for its sizes but has none"
            )
        entries.append(
            ZipEntry(
                index=index,
                name=decode_name(raw_name, flags),
                raw_name=raw_name,
                flags=flags,
                method=method,
                dos_time=dtime,
                dos_date=ddate,
                crc32=crc,
                compressed_size=values["compressed_size"],
                size=values["size"],
                header_offset=values["offset"] + prefix,
                create_system=system,
                external_attr=eattr,
                zip64=zip64,
            )
        )
        pos = body_end
    return tuple(entries)


def parse_local_header(src: ByteSource, offset: int) -> LocalHeader | None:
    """The local header at ``offset``, or None when there is none (bad signature, cut short)."""
    raw = bytes(src.read_at(offset, LOCAL_HEADER.size))
    if len(raw) < LOCAL_HEADER.size or raw[:4] != LOCAL_SIG:
        return None
    _, _ver, flags, method, _t, _d, crc, csize, usize, nlen, elen = LOCAL_HEADER.unpack(raw)
    tail = bytes(src.read_at(offset + LOCAL_HEADER.size, nlen + elen))
    if len(tail) < nlen + elen:
        return None
    raw_name, extra = tail[:nlen], tail[nlen:]
    values = {"size": usize, "compressed_size": csize}
    need = [k for k in ("size", "compressed_size") if values[k] == MAX_U32]
    if need:
        try:
            # In a local header the zip64 block holds both sizes whenever either overflows.
            _zip64_extra(extra, ["size", "compressed_size"], values)
        except ZipStructureError:
            return None
    return LocalHeader(
        offset=offset,
        flags=flags,
        method=method,
        crc32=crc,
        compressed_size=values["compressed_size"],
        size=values["size"],
        raw_name=raw_name,
        extra=extra,
        data_offset=offset + LOCAL_HEADER.size + nlen + elen,
    )


def read_local_header(src: ByteSource, entry: ZipEntry) -> LocalHeader:
    """The local header that belongs to ``entry``, checked against it.

    Raises:
        ZipStructureError: missing, cut short, or naming another member or method.
    """
    local = parse_local_header(src, entry.header_offset)
    if local is None:
        raise ZipStructureError(
            f"member {entry.name!r}: no valid local header at offset {entry.header_offset}"
        )
    if local.raw_name != entry.raw_name:
        raise ZipStructureError(
            f"member {entry.name!r}: local header at offset {entry.header_offset} names "
            f"{local.raw_name!r} instead"
        )
    if local.method != entry.method:
        raise ZipStructureError(
            f"member {entry.name!r}: local header says method {local.method}, central "
            f"directory says {entry.method}"
        )
    if local.data_offset + entry.compressed_size > src.size:
        raise ZipStructureError(
            f"member {entry.name!r}: its {entry.compressed_size} bytes of data at offset "
            f"{local.data_offset} run past the end of the archive ({src.size} bytes)"
        )
    return local


def check_method(name: str, flags: int, method: int) -> None:
    """Raise ``UnsupportedMethodError`` for encryption or methods taskloop cannot inflate."""
    if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        raise UnsupportedMethodError(
            f"member {name!r} is encrypted with ZIP's own encryption, which taskloop does not read",
            hint="re-create the archive without a ZIP password; use `taskloop blob encode "
            "--key-file` for encryption instead",
        )
    if method not in SUPPORTED_METHODS:
        label = METHOD_NAMES.get(method, "unknown")
        raise UnsupportedMethodError(
            f"member {name!r} uses compression method {method} ({label}); taskloop reads "
            "stored, deflate and bzip2",
            hint="re-create the archive with deflate (the default of zip and zipfile)",
        )
