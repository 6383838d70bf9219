"""What verify and repair found, member by member, as JSON and as a human summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from taskloop.errors import ExitStatus


class MemberStatus(StrEnum):
    INTACT = "intact"  # found where the directory says, every available check passes
    RECOVERED = "recovered"  # content verifies, but finding it needed salvage
    DAMAGED = "damaged"  # found, but its bytes fail CRC-32, SHA-256 or inflating
    MISSING = "missing"  # listed (manifest or directory) but not found at all


class MemberAction(StrEnum):
    KEPT = "kept"  # written to the output
    SKIPPED = "skipped"  # non-critical and lost: left out
    REPLACED = "replaced"  # non-critical and lost: the default template written instead
    FAILED = "failed"  # critical and lost: the repair fails
    NONE = "none"  # verify only: nothing is written


class Outcome(StrEnum):
    INTACT = "intact"  # nothing wrong anywhere
    REPAIRED = "repaired"  # problems fixed, every member recovered
    REPAIRED_WITH_LOSSES = "repaired_with_losses"  # non-critical members skipped or replaced
    DAMAGED = "damaged"  # verify: damage found (nothing written)
    FAILED = "failed"  # a critical member is lost, or nothing is recoverable


OUTCOME_EXIT = {
    Outcome.INTACT: ExitStatus.OK,
    Outcome.REPAIRED: ExitStatus.OK,
    Outcome.REPAIRED_WITH_LOSSES: ExitStatus.REPAIRED_WITH_LOSSES,
    Outcome.DAMAGED: ExitStatus.CORRUPT,
    Outcome.FAILED: ExitStatus.CORRUPT,
}

VERIFIED = (MemberStatus.INTACT, MemberStatus.RECOVERED)


@dataclass(slots=True)
class MemberReport:
    name: str
    status: MemberStatus
    action: MemberAction = MemberAction.NONE
    critical: bool = False
    size: int | None = None  # expected (manifest or directory)
    actual_size: int | None = None
    crc32_expected: str | None = None
    crc32_actual: str | None = None
    sha256_expected: str | None = None
    sha256_actual: str | None = None
    verified_by: list[str] = field(default_factory=list)
    source: str = ""  # "central directory", "local header scan", "manifest"
    offset: int | None = None
    detail: str = ""

    @property
    def verified(self) -> bool:
        return self.status in VERIFIED


@dataclass(slots=True)
class Report:
    """Findings of one verify or repair run."""

    operation: str  # "verify", "repair", "decode", "extract"
    input: str = ""
    format: str = ""  # "taskloop-blob/1", "base64", "data-url", "zip"
    encrypted: bool = False
    outcome: Outcome = Outcome.INTACT
    members: list[MemberReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # oddities that are not damage
    archive_size_expected: int | None = None
    archive_size_actual: int | None = None
    archive_sha256_expected: str | None = None
    archive_sha256_actual: str | None = None
    output: str | None = None

    def counts(self) -> dict[str, int]:
        out = {status.value: 0 for status in MemberStatus}
        for m in self.members:
            out[m.status.value] += 1
        return out

    @property
    def exit_status(self) -> ExitStatus:
        return OUTCOME_EXIT[self.outcome]

    def member(self, name: str) -> MemberReport:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary(self) -> str:
        """A few lines a person reads: outcome, counts, then every member that is not intact."""
        counts = self.counts()
        total = len(self.members)
        head = {
            Outcome.INTACT: "intact",
            Outcome.REPAIRED: "repaired, nothing lost",
            Outcome.REPAIRED_WITH_LOSSES: "repaired with losses",
            Outcome.DAMAGED: "DAMAGED",
            Outcome.FAILED: "FAILED",
        }[self.outcome]
        fmt = f" ({self.format}{', encrypted' if self.encrypted else ''})" if self.format else ""
        lines = [
            f"{self.operation} {self.input or '<input>'}{fmt}: {head}",
            "  members: "
            + ", ".join(f"{counts[s.value]} {s.value}" for s in MemberStatus)
            + f" (of {total})",
        ]
        lines.extend(f"  problem: {p}" for p in self.problems[:10])
        lines.extend(f"  note: {n}" for n in self.notes[:5])
        if len(self.problems) > 10:
            lines.append(f"  ... and {len(self.problems) - 10} more problems (see the JSON report)")
        shown = [m for m in self.members if m.status != MemberStatus.INTACT]
        for m in shown[:25]:
            flag = " [critical]" if m.critical else ""
            action = f" -> {m.action.value}" if m.action != MemberAction.NONE else ""
            detail = f": {m.detail}" if m.detail else ""
            lines.append(f"  {m.status.value:9s} {m.name}{flag}{action}{detail}")
        if len(shown) > 25:
            lines.append(f"  ... and {len(shown) - 25} more members (see the JSON report)")
        if self.output:
            lines.append(f"  output: {self.output}")
        return "\n".join(lines)
