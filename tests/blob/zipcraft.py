"""Build raw ZIP archives byte by byte, including the ones ``zipfile`` refuses to write.

Tests of the blob codec need archives that are malformed or hostile on purpose: raw
(undecodable, traversing, NUL-carrying) names, symlink and device entries, several
central-directory entries sharing one local header, overlapping data spans, a local
name that differs from the central one, sizes that lie, data descriptors with or
without their ``PK\\x07\\x08`` signature, zip64 extra fields and end records, junk before
and after the archive and archive comments. ``zipfile`` writes none of these.

The API is two functions and one record:

* :class:`Entry` describes one member: its content, how it is compressed and every
  field that may lie (name, sizes, CRC-32, flags, attributes, where its header is);
* :func:`build` lays out local headers, data, descriptors, the central directory and the
  end records, and returns the archive's bytes;
* :func:`quoted_overlap_bomb` builds David Fifield's "quoted overlap" zip bomb, where
  each member's compressed data quotes the next member's local header.

Every field left at its default is recorded truthfully, so ``build([Entry("a", b"x")])``
is an ordinary archive that ``zipfile`` reads. Layout reference: PKWARE APPNOTE.TXT
6.3.10, sections 4.3.7-4.3.16 and 4.5.3.
"""

from __future__ import annotations

import bz2
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Literal

# Compression methods (APPNOTE 4.4.5).
STORED = 0
DEFLATED = 8
BZIP2 = 12
LZMA = 14

# General purpose flag bits (APPNOTE 4.4.4).
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800

# "Version made by" host systems (APPNOTE 4.4.2).
SYSTEM_DOS = 0
SYSTEM_UNIX = 3

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
DESCRIPTOR_SIG = b"PK\x07\x08"
EOCD_SIG = b"PK\x05\x06"
EOCD64_SIG = b"PK\x06\x06"
EOCD64_LOCATOR_SIG = b"PK\x06\x07"

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes + name + extra
CENTRAL_HEADER = struct.Struct("<4sBBHHHHHIIIHHHHHII")  # 46 bytes + name + extra + comment
EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes + comment
EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes

U16 = 0xFFFF
U32 = 0xFFFFFFFF
DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest DOS date


def unix_attr(mode: int) -> int:
    """``external_attr`` for a Unix ``st_mode`` (type and permission bits in the high half)."""
    return mode << 16


def compress(data: bytes, method: int) -> bytes:
    """``data`` compressed the way a ZIP member of ``method`` stores it.

    Deflate is raw (no zlib header), as ZIP requires; LZMA carries ZIP's 4-byte version
    and properties prefix (APPNOTE 5.8.8), produced by ``zipfile``'s own compressor.
    """
    if method == STORED:
        return data
    if method == DEFLATED:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        return comp.compress(data) + comp.flush()
    if method == BZIP2:
        return bz2.compress(data)
    if method == LZMA:
        comp = zipfile.LZMACompressor()  # type: ignore[attr-defined]
        return bytes(comp.compress(data) + comp.flush())
    raise ValueError(f"zipcraft cannot compress with method {method}; pass Entry.raw")


def _as_bytes(name: str | bytes) -> bytes:
    return name.encode("utf-8") if isinstance(name, str) else name


@dataclass
class Entry:
    """One member. Defaults are truthful; every other value is written as given.

    Attributes:
        name: the name in the central directory; ``str`` is UTF-8 encoded (and the UTF-8
            flag set when it is not ASCII), ``bytes`` is written as is.
        data: the uncompressed content (what the CRC-32 and size describe by default).
        method: compression method, used to compress ``data`` unless ``raw`` is given.
        raw: the compressed bytes to write instead of compressing ``data``.
        flags: extra general-purpose flag bits (``FLAG_ENCRYPTED`` ...).
        crc, size, compressed_size: the values declared in both headers (and the data
            descriptor); None means the true value.
        local_name: the name in the local header when it should differ from ``name``.
        create_system, external_attr: host system and attributes of the central entry;
            ``external_attr`` None means a regular 0644 file, or a 0755 directory for a
            name ending in ``/``. Use :func:`unix_attr` with ``stat.S_IF*`` modes.
        descriptor: ``"sig"`` or ``"nosig"`` sets flag bit 3, writes zeros for CRC-32 and
            sizes in the local header and a data descriptor (with or without its
            ``PK\\x07\\x08`` signature) after the data; None writes no descriptor.
        zip64: record the sizes (and the offset) in zip64 extra fields of both headers,
            with 0xFFFFFFFF in the 32-bit fields; a descriptor then has 64-bit sizes.
        header_of: index of an earlier entry whose local header (and data) this central
            entry points at; no local record is written for this entry. This is the
            shared-header overlap bomb.
        extra_local, extra_central: extra-field bytes appended after the zip64 field.
        dos_time, dos_date: the modification time fields.
        version: "version needed to extract" (45 is used instead when ``zip64``).
    """

    name: str | bytes
    data: bytes = b""
    method: int = STORED
    raw: bytes | None = None
    flags: int = 0
    crc: int | None = None
    size: int | None = None
    compressed_size: int | None = None
    local_name: str | bytes | None = None
    create_system: int = SYSTEM_UNIX
    external_attr: int | None = None
    descriptor: Literal["sig", "nosig"] | None = None
    zip64: bool = False
    header_of: int | None = None
    extra_local: bytes = b""
    extra_central: bytes = b""
    dos_time: int = 0
    dos_date: int = DOS_DATE_1980
    version: int = 20

    @property
    def raw_name(self) -> bytes:
        return _as_bytes(self.name)

    @property
    def payload(self) -> bytes:
        """The compressed bytes written after the local header."""
        return self.raw if self.raw is not None else compress(self.data, self.method)

    @property
    def all_flags(self) -> int:
        flags = self.flags
        if isinstance(self.name, str) and not self.name.isascii():
            flags |= FLAG_UTF8
        if self.descriptor is not None:
            flags |= FLAG_DESCRIPTOR
        return flags

    @property
    def declared(self) -> tuple[int, int, int]:
        """(CRC-32, compressed size, uncompressed size) as the central directory records."""
        return (
            zlib.crc32(self.data) if self.crc is None else self.crc,
            len(self.payload) if self.compressed_size is None else self.compressed_size,
            len(self.data) if self.size is None else self.size,
        )

    @property
    def attributes(self) -> int:
        if self.external_attr is not None:
            return self.external_attr
        return unix_attr(0o40755 if self.raw_name.endswith(b"/") else 0o100644)


def _local_record(entry: Entry) -> bytes:
    """Local header, name, extra, data and (when asked for) the data descriptor."""
    crc, csize, usize = entry.declared
    name = _as_bytes(entry.local_name) if entry.local_name is not None else entry.raw_name
    local_crc, local_csize, local_usize = (0, 0, 0) if entry.descriptor else (crc, csize, usize)
    extra = b""
    if entry.zip64:
        extra = struct.pack("<HHQQ", 1, 16, local_usize, local_csize)
        local_csize = local_usize = U32
    extra += entry.extra_local
    header = LOCAL_HEADER.pack(
        LOCAL_SIG,
        45 if entry.zip64 else entry.version,
        entry.all_flags,
        entry.method,
        entry.dos_time,
        entry.dos_date,
        local_crc,
        local_csize,
        local_usize,
        len(name),
        len(extra),
    )
    descriptor = b""
    if entry.descriptor is not None:
        sizes = struct.pack("<QQ" if entry.zip64 else "<II", csize, usize)
        signature = DESCRIPTOR_SIG if entry.descriptor == "sig" else b""
        descriptor = signature + struct.pack("<I", crc) + sizes
    return header + name + extra + entry.payload + descriptor


def _central_record(entry: Entry, offset: int) -> bytes:
    crc, csize, usize = entry.declared
    extra = b""
    if entry.zip64:
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
        csize = usize = offset = U32
    extra += entry.extra_central
    version = 45 if entry.zip64 else entry.version
    return (
        CENTRAL_HEADER.pack(
            CENTRAL_SIG,
            version,
            entry.create_system,
            version,
            entry.all_flags,
            entry.method,
            entry.dos_time,
            entry.dos_date,
            crc,
            csize,
            usize,
            len(entry.raw_name),
            len(extra),
            0,  # comment length
            0,  # disk number start
            0,  # internal attributes
            entry.attributes,
            offset,
        )
        + entry.raw_name
        + extra
    )


def build(
    entries: list[Entry],
    *,
    prefix: bytes = b"",
    suffix: bytes = b"",
    comment: bytes = b"",
    zip64_end: bool = False,
    offsets_include_prefix: bool = False,
) -> bytes:
    """The archive of ``entries``, in order, as bytes.

    Args:
        prefix: bytes before the first local header (a self-extractor stub, junk).
        suffix: bytes after the end record and its comment (trailing junk).
        comment: the archive comment in the end record.
        zip64_end: write a zip64 end record and locator, with 0xFFFF/0xFFFFFFFF in the
            classic end record's counts, size and offset.
        offsets_include_prefix: record offsets from the start of the file (as ``zip -A``
            does for a self-extractor) instead of from the start of the archive proper
            (as ``cat stub.exe archive.zip`` leaves them).
    """
    base = len(prefix) if offsets_include_prefix else 0
    body = bytearray()
    offsets: list[int] = []
    for index, entry in enumerate(entries):
        if entry.header_of is not None:
            if not 0 <= entry.header_of < index:
                raise ValueError(f"entry {index}: header_of must name an earlier entry")
            offsets.append(offsets[entry.header_of])
            continue
        offsets.append(base + len(body))
        body += _local_record(entry)
    cd_offset = base + len(body)
    central = b"".join(
        _central_record(entry, offset) for entry, offset in zip(entries, offsets, strict=True)
    )
    count = len(entries)
    end = b""
    if zip64_end:
        eocd64_offset = cd_offset + len(central)
        end += EOCD64.pack(
            EOCD64_SIG, EOCD64.size - 12, 45, 45, 0, 0, count, count, len(central), cd_offset
        )
        end += EOCD64_LOCATOR.pack(EOCD64_LOCATOR_SIG, 0, eocd64_offset, 1)
        end += EOCD.pack(EOCD_SIG, 0, 0, U16, U16, U32, U32, len(comment))
    else:
        end += EOCD.pack(EOCD_SIG, 0, 0, count, count, len(central), cd_offset, len(comment))
    return prefix + bytes(body) + central + end + comment + suffix


def central_directory_offset(archive: bytes) -> int:
    """Where the central directory starts in ``archive``, counted from its first byte.

    Found from the end: the directory ends where the (zip64) end record starts, so a
    prefix of either offset convention does not matter. The last ``PK\\x05\\x06`` in
    ``archive`` must be the end record (no such bytes in the comment or the suffix).
    """
    eocd = archive.rindex(EOCD_SIG)
    (cd_size,) = struct.unpack_from("<I", archive, eocd + 12)
    cd_end = eocd
    record = eocd - EOCD64_LOCATOR.size - EOCD64.size
    if record >= 0 and archive[record : record + 4] == EOCD64_SIG:
        (cd_size,) = struct.unpack_from("<Q", archive, record + 40)
        cd_end = record
    return cd_end - cd_size


def _stored_block_header(length: int) -> bytes:
    """A non-final stored deflate block header: the next ``length`` bytes are literal."""
    return struct.pack("<BHH", 0, length, length ^ 0xFFFF)


def quoted_overlap_bomb(count: int, kernel: bytes, *, name_width: int = 4) -> bytes:
    """David Fifield's quoted-overlap zip bomb (https://www.bamsoftware.com/hacks/zipbomb/).

    ``count`` members named ``0000``, ``0001``, ... share one compressed ``kernel``.
    Member ``i``'s compressed data begins with a non-final stored deflate block that
    quotes member ``i + 1``'s local header, then runs on through the following members'
    data into the kernel, so member ``i`` inflates to the local headers of members
    ``i + 1 ... count - 1`` followed by ``kernel``. Every CRC-32 and size is true; only
    the data spans overlap (each contains the next member's local header).
    """
    kernel_deflated = compress(kernel, DEFLATED)
    names = [f"{i:0{name_width}d}".encode() for i in range(count)]
    headers: list[bytes] = [b""] * count
    quotes: list[bytes] = [b""] * count
    facts: list[tuple[int, int, int]] = [(0, 0, 0)] * count  # (CRC-32, csize, usize)
    plain = kernel  # member i's uncompressed content, built from the last member back
    packed = kernel_deflated  # member i's compressed data
    for i in reversed(range(count)):
        if i < count - 1:
            quotes[i] = _stored_block_header(len(headers[i + 1]))
            plain = headers[i + 1] + plain
            packed = quotes[i] + headers[i + 1] + packed
        facts[i] = (zlib.crc32(plain), len(packed), len(plain))
        headers[i] = LOCAL_HEADER.pack(
            LOCAL_SIG, 20, 0, DEFLATED, 0, DOS_DATE_1980, *facts[i], len(names[i]), 0
        )
        headers[i] += names[i]
    body = bytearray()
    offsets = []
    for i in range(count):
        offsets.append(len(body))
        body += headers[i] + quotes[i]
    body += kernel_deflated
    central = b"".join(
        CENTRAL_HEADER.pack(
            CENTRAL_SIG,
            20,
            SYSTEM_UNIX,
            20,
            0,
            DEFLATED,
            0,
            DOS_DATE_1980,
            *facts[i],
            len(names[i]),
            0,
            0,
            0,
            0,
            unix_attr(0o100644),
            offsets[i],
        )
        + names[i]
        for i in range(count)
    )
    end = EOCD.pack(EOCD_SIG, 0, 0, count, count, len(central), len(body), 0)
    return bytes(body) + central + end
