"""``taskloop blob ...``: thin commands over :mod:`taskloop.blob`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from taskloop.blob.codec import (
    DEFAULT_CRITICAL,
    decode_file,
    encode_file,
    extract_blob,
    inspect_blob,
    repair_file,
    verify_file,
)
from taskloop.blob.crypto import (
    KEY_ENV,
    NO_KEYS,
    Keys,
    generate_key,
    key_id,
    keys_from_env,
    load_key_file,
    public_key_id,
)
from taskloop.blob.errors import DamagedArchiveError
from taskloop.blob.report import Report
from taskloop.blob.safety import DEFAULT_LIMITS, Limits
from taskloop.cliutil import EPILOG, handle_errors, parse_size
from taskloop.errors import InputFileError

blob_app = typer.Typer(
    help="ZIP archives carried as UTF-8 text blobs: encode, decode, verify, repair, extract, "
    "inspect. The format is described in docs/blob-format.md.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

_D = DEFAULT_LIMITS
BlobArg = Annotated[
    Path, typer.Argument(help="The blob: a text file (or bare base64, a data: URL, a ZIP).")
]
KeyFile = Annotated[
    list[Path] | None,
    typer.Option(
        "--key-file",
        "-k",
        metavar="KEYFILE",
        help=f"Key file: 64 hex digits / base64 of 32 bytes, or a PEM RSA private key. "
        f"Repeatable. Default: ${KEY_ENV}.",
    ),
]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", metavar="FILE", help="Write the JSON report here.")
]
TemplateOpt = Annotated[
    Path | None,
    typer.Option(
        "--template",
        metavar="FILE",
        help="Write this file's bytes in place of each lost non-critical member "
        "(default: skip them).",
    ),
]
CriticalOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--critical",
        metavar="GLOB",
        help="Glob of members whose loss fails the repair, for inputs without a manifest "
        "(a blob's manifest carries its own flags). Repeatable.",
    ),
]
MaxTotal = Annotated[
    str,
    typer.Option(
        "--max-total-size", metavar="SIZE", help="Most uncompressed bytes in all (e.g. 8GiB)."
    ),
]
MaxMember = Annotated[
    str,
    typer.Option(
        "--max-member-size", metavar="SIZE", help="Most uncompressed bytes in one member."
    ),
]
MaxRatio = Annotated[
    float,
    typer.Option(
        "--max-ratio", metavar="RATIO", help="Most compression ratio of a member past 1 MiB."
    ),
]
MaxMembers = Annotated[
    int, typer.Option("--max-members", metavar="N", help="Most members in an archive.")
]
MaxNesting = Annotated[
    int, typer.Option("--max-nesting", metavar="N", help="Most archives-in-archives depth.")
]
MaxDepth = Annotated[
    int, typer.Option("--max-path-depth", metavar="N", help="Most directories in a path.")
]


def _limits(
    total: str, member: str, ratio: float, members: int, nesting: int, depth: int
) -> Limits:
    try:
        return Limits(
            max_total_size=parse_size(total),
            max_member_size=parse_size(member),
            max_ratio=ratio,
            max_members=members,
            max_nesting=nesting,
            max_path_depth=depth,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _keys(files: list[Path] | None) -> Keys:
    keys = NO_KEYS
    for path in files or ():
        keys = keys.merge(load_key_file(path))
    return keys if keys else keys_from_env()


def _read_template(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read template {str(path)!r}: {exc.strerror}") from None


def _write_report(report: Report, path: Path | None) -> None:
    if path is None:
        return
    try:
        path.write_text(report.to_json() + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot write report {str(path)!r}: {exc.strerror}") from None


def _finish(report: Report, report_path: Path | None, *, as_json: bool = False) -> None:
    _write_report(report, report_path)
    typer.echo(report.to_json() if as_json else report.summary())
    raise typer.Exit(int(report.exit_status))


def _salvage_failed(exc: DamagedArchiveError, report_path: Path | None) -> None:
    """A failed repair still shows (and saves) what it found before the error."""
    if isinstance(exc.report, Report):
        _write_report(exc.report, report_path)
        typer.echo(exc.report.summary())


@blob_app.command()
@handle_errors
def encode(
    archive: Annotated[Path, typer.Argument(metavar="ARCHIVE", help="The ZIP archive to encode.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="BLOB", help="Where to write the blob.")
    ],
    wrap: Annotated[
        int,
        typer.Option(
            metavar="N", help="Characters per payload line (multiple of 4); 0 for one line."
        ),
    ] = 76,
    urlsafe: Annotated[bool, typer.Option(help="Use the URL-safe base64 alphabet.")] = False,
    critical: Annotated[
        list[str] | None,
        typer.Option(
            "--critical",
            metavar="GLOB",
            help="Glob of members whose loss must fail a repair. Repeatable. "
            f"Default: {', '.join(DEFAULT_CRITICAL)}.",
        ),
    ] = None,
    key_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--key-file", "-k", metavar="KEYFILE", help="Encrypt for this key file. Repeatable."
        ),
    ] = None,
    recipient: Annotated[
        list[Path] | None,
        typer.Option(
            "--recipient", metavar="PEM", help="Encrypt for this PEM RSA public key. Repeatable."
        ),
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(metavar="SIZE", help="Plaintext bytes per encrypted chunk.")
    ] = "64KiB",
    max_total_size: MaxTotal = "8GiB",
    max_member_size: MaxMember = "4GiB",
    max_ratio: MaxRatio = _D.max_ratio,
    max_members: MaxMembers = _D.max_members,
    max_nesting: MaxNesting = _D.max_nesting,
    max_path_depth: MaxDepth = _D.max_path_depth,
) -> None:
    """Encode a ZIP archive as a blob (checked, with a manifest of every member).

    With --key-file or --recipient the payload and manifest are encrypted (AES-256-GCM).
    """
    keys = NO_KEYS
    for path in [*(key_file or ()), *(recipient or ())]:
        keys = keys.merge(load_key_file(path))
    limits = _limits(
        max_total_size, max_member_size, max_ratio, max_members, max_nesting, max_path_depth
    )
    if wrap < 0 or wrap % 4:
        raise typer.BadParameter("must be 0 or a positive multiple of 4", param_hint="--wrap")
    header = encode_file(
        archive,
        output,
        wrap=wrap,
        alphabet="urlsafe" if urlsafe else "standard",
        critical=tuple(critical) if critical else DEFAULT_CRITICAL,
        key=keys or None,
        chunk_size=parse_size(chunk_size),
        limits=limits,
    )
    archive_info = header.archive
    assert archive_info is not None
    enc = ""
    if header.encryption is not None:
        enc = ", encrypted for " + ", ".join(
            f"{r.type}:{r.key_id}" for r in header.encryption.recipients
        )
    typer.echo(
        f"encoded {archive} -> {output}: {archive_info.members} members, {archive_info.size} "
        f"bytes -> {header.payload.chars} base64 characters{enc}"
    )


@blob_app.command()
@handle_errors
def decode(
    blob: BlobArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="ARCHIVE", help="Where to write the archive.")
    ],
    repair: Annotated[
        bool, typer.Option("--repair", help="Salvage what verifies instead of failing.")
    ] = False,
    report: ReportOpt = None,
    template: TemplateOpt = None,
    critical: CriticalOpt = None,
    key_file: KeyFile = None,
    max_total_size: MaxTotal = "8GiB",
    max_member_size: MaxMember = "4GiB",
    max_ratio: MaxRatio = _D.max_ratio,
    max_members: MaxMembers = _D.max_members,
    max_nesting: MaxNesting = _D.max_nesting,
    max_path_depth: MaxDepth = _D.max_path_depth,
) -> None:
    """Decode a blob to its ZIP archive; the archive appears only if it is sound.

    Accepts taskloop blobs, bare base64 (wrapped or not, padded or not, URL-safe), data:
    URLs, a BOM and CRLF line ends. With --repair, damaged input is salvaged (see
    `taskloop blob repair`).
    """
    limits = _limits(
        max_total_size, max_member_size, max_ratio, max_members, max_nesting, max_path_depth
    )
    try:
        result = decode_file(
            blob,
            output,
            key=_keys(key_file) or None,
            repair=repair,
            template=_read_template(template),
            critical=tuple(critical or ()),
            limits=limits,
        )
    except DamagedArchiveError as exc:
        _salvage_failed(exc, report)
        raise
    if repair:
        _finish(result, report)
    _write_report(result, report)
    typer.echo(f"decoded {blob} -> {output}: {result.archive_size_actual} bytes, intact")


@blob_app.command()
@handle_errors
def verify(
    blob: BlobArg,
    report: ReportOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    key_file: KeyFile = None,
    max_total_size: MaxTotal = "8GiB",
    max_member_size: MaxMember = "4GiB",
    max_ratio: MaxRatio = _D.max_ratio,
    max_members: MaxMembers = _D.max_members,
    max_nesting: MaxNesting = _D.max_nesting,
    max_path_depth: MaxDepth = _D.max_path_depth,
) -> None:
    """Check a blob completely: header seal, archive SHA-256, ZIP structure, and every
    member's CRC-32 and manifest SHA-256. Exit 0 when intact, 4 when damaged."""
    limits = _limits(
        max_total_size, max_member_size, max_ratio, max_members, max_nesting, max_path_depth
    )
    result = verify_file(blob, key=_keys(key_file) or None, limits=limits)
    _finish(result, report, as_json=as_json)


@blob_app.command()
@handle_errors
def repair(
    blob: BlobArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="ARCHIVE", help="Where to write the archive.")
    ],
    report: ReportOpt = None,
    template: TemplateOpt = None,
    critical: CriticalOpt = None,
    key_file: KeyFile = None,
    max_total_size: MaxTotal = "8GiB",
    max_member_size: MaxMember = "4GiB",
    max_ratio: MaxRatio = _D.max_ratio,
    max_members: MaxMembers = _D.max_members,
    max_nesting: MaxNesting = _D.max_nesting,
    max_path_depth: MaxDepth = _D.max_path_depth,
) -> None:
    """Salvage a damaged blob into a clean archive of every member that verifies.

    Handles bit flips, truncation anywhere, a lost or corrupt central directory, junk
    before or after, mangled base64 and failed encrypted chunks. Each member is reported
    intact / recovered / damaged / missing. A lost critical member fails the repair
    (exit 4, nothing written); lost non-critical members are skipped or replaced by
    --template (exit 3).
    """
    limits = _limits(
        max_total_size, max_member_size, max_ratio, max_members, max_nesting, max_path_depth
    )
    try:
        result = repair_file(
            blob,
            output,
            key=_keys(key_file) or None,
            template=_read_template(template),
            critical=tuple(critical or ()),
            limits=limits,
        )
    except DamagedArchiveError as exc:
        _salvage_failed(exc, report)
        raise
    _finish(result, report)


@blob_app.command()
@handle_errors
def extract(
    blob: BlobArg,
    directory: Annotated[
        Path,
        typer.Option(
            "--directory", "-d", metavar="DIR", help="Target directory (created if missing)."
        ),
    ],
    repair: Annotated[
        bool, typer.Option("--repair", help="Extract what verifies from a damaged blob.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace files that already exist.")] = False,
    report: ReportOpt = None,
    template: TemplateOpt = None,
    critical: CriticalOpt = None,
    key_file: KeyFile = None,
    max_total_size: MaxTotal = "8GiB",
    max_member_size: MaxMember = "4GiB",
    max_ratio: MaxRatio = _D.max_ratio,
    max_members: MaxMembers = _D.max_members,
    max_nesting: MaxNesting = _D.max_nesting,
    max_path_depth: MaxDepth = _D.max_path_depth,
) -> None:
    """Unpack a blob into a directory, never writing outside it and never following links.

    Each file is written under a temporary name, verified, then renamed into place.
    """
    limits = _limits(
        max_total_size, max_member_size, max_ratio, max_members, max_nesting, max_path_depth
    )
    try:
        result = extract_blob(
            blob,
            directory,
            key=_keys(key_file) or None,
            repair=repair,
            template=_read_template(template),
            critical=tuple(critical or ()),
            overwrite=overwrite,
            limits=limits,
        )
    except DamagedArchiveError as exc:
        _salvage_failed(exc, report)
        raise
    if repair:
        _finish(result, report)
    _write_report(result, report)
    typer.echo(f"extracted {len(result.members)} members of {blob} into {directory}")


@blob_app.command()
@handle_errors
def inspect(
    blob: BlobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    key_file: KeyFile = None,
) -> None:
    """Show a blob's header and manifest without decoding its payload.

    An encrypted blob's manifest is sealed: pass its key to see it.
    """
    info = inspect_blob(blob, key=_keys(key_file) or None)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2, ensure_ascii=False))
        return
    lines = [f"{blob}: {info.kind}, {info.input_size} bytes"]
    header = info.header
    if header is not None:
        p = header.payload
        seal = "ok" if header.seal_ok else "MISMATCH"
        lines.append(f"  created by: {header.created_by or '?'}; seal: {seal}")
        lines.append(
            f"  payload: {p.encoding} ({p.alphabet}), {p.size} bytes, {p.chars} characters, "
            f"wrapped at {p.wrap or 'no'} columns"
        )
        if header.archive is not None:
            lines.append(
                f"  archive: {header.archive.size} bytes, {header.archive.members} members, "
                f"sha256 {header.archive.sha256}"
            )
        if header.encryption is not None:
            e = header.encryption
            who = ", ".join(f"{r.type}:{r.key_id}" for r in e.recipients)
            lines.append(f"  encryption: {e.scheme}, {e.chunk_size}-byte chunks, for {who}")
    if info.note:
        lines.append(f"  note: {info.note}")
    if info.members:
        lines.append(f"  {'size':>12} {'crc32':8} {'crit':4} name")
        for m in info.members:
            lines.append(f"  {m.size:>12} {m.crc32:08x} {'yes' if m.critical else '':4} {m.name}")
    typer.echo("\n".join(lines))


@blob_app.command()
@handle_errors
def keygen(
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="KEYFILE", help="Key file to create.")
    ],
    rsa_bits: Annotated[
        int,
        typer.Option(
            "--rsa",
            metavar="BITS",
            help="Create an RSA key pair of this many bits instead (OUTPUT private, "
            "OUTPUT.pub public); 0 for a symmetric key.",
        ),
    ] = 0,
) -> None:
    """Create a key file (readable by you only) for --key-file / --recipient."""
    if rsa_bits and rsa_bits < 2048:
        raise typer.BadParameter("use 2048 bits or more", param_hint="--rsa")
    if rsa_bits:
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_secret(output, pem)
        public_path = output.with_name(output.name + ".pub")
        public_path.write_bytes(pub)
        typer.echo(
            f"wrote RSA-{rsa_bits} private key {output} and public key {public_path} "
            f"(key id {public_key_id(private.public_key())})"
        )
        return
    key = generate_key()
    _write_secret(output, key.hex().encode() + b"\n")
    typer.echo(f"wrote 256-bit key {output} (key id {key_id(key)})")


def _write_secret(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputFileError(
            f"{str(path)!r} already exists; taskloop does not overwrite key files"
        ) from None
    except OSError as exc:
        raise InputFileError(f"cannot create {str(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
