"""Can the model's tokenizer read the input? Unknown-token rate and uncovered scripts.

A translation model whose vocabulary lacks a script turns every word of it into
``<unk>`` (Marian en-de given Cyrillic) and translates noise, with no error anywhere.
This check runs before generation, per source language: the share of tokens that are the
unknown token (or, for tokenizers without one, the share of characters that do not
survive an encode/decode round trip) and the Unicode scripts of which no character is
read as anything but unknown. Findings are warnings, not failures: the model still runs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from taskloop.data.records import Check

# Script names as the first word of a character's Unicode name ("CYRILLIC SMALL LETTER A").
SCRIPTS = frozenset(
    (  # noqa: SIM905 - a word list reads better as prose
        "LATIN CYRILLIC GREEK ARMENIAN HEBREW ARABIC SYRIAC THAANA DEVANAGARI BENGALI GURMUKHI "
        "GUJARATI ORIYA TAMIL TELUGU KANNADA MALAYALAM SINHALA THAI LAO TIBETAN MYANMAR GEORGIAN "
        "HANGUL ETHIOPIC CHEROKEE KHMER MONGOLIAN HIRAGANA KATAKANA CJK BOPOMOFO YI"
    ).split()
)
MAX_SAMPLES = 5


def script_of(ch: str) -> str | None:
    """The script of a letter or mark ("LATIN", "CJK", ...), None for digits, punctuation,
    symbols and letters of scripts not listed in :data:`SCRIPTS`."""
    if unicodedata.category(ch)[0] not in "LM":
        return None
    parts = unicodedata.name(ch, "").split()
    if parts and parts[0] in ("FULLWIDTH", "HALFWIDTH"):
        parts = parts[1:]
    return parts[0] if parts and parts[0] in SCRIPTS else None


@dataclass(frozen=True)
class CoverageReport:
    """How well a tokenizer reads the texts of one language.

    unk_rate: unknown tokens / all tokens (special tokens not counted); for tokenizers
        without an unknown token, characters lost in an encode/decode round trip /
        non-space characters.
    uncovered_scripts: scripts present in the texts none of whose characters the
        tokenizer reads as anything but unknown.
    samples: up to five pieces of text it could not read.
    """

    lang: str
    unk_rate: float
    uncovered_scripts: list[str]
    samples: list[str]
    units: int = 0  # tokens (or characters with the round-trip method) counted
    unknown: int = 0
    method: str = "unk"  # "unk" or "roundtrip"

    def has_problem(self, max_unk_rate: float = 0.01) -> bool:
        return bool(self.uncovered_scripts) or self.unk_rate > max_unk_rate

    def message(self, model: str = "the model") -> str:
        """One sentence for a report or a log."""
        what = "tokens" if self.method == "unk" else "characters"
        text = (
            f"source language {self.lang}: {self.unk_rate:.1%} of {self.units} {what} are "
            f"unknown to the tokenizer of {model}"
        )
        if self.uncovered_scripts:
            text += f"; scripts it cannot read: {', '.join(self.uncovered_scripts)}"
        if self.samples:
            text += f" (e.g. {', '.join(repr(s) for s in self.samples)})"
        return text + "; the model does not see this text: use a model whose vocabulary covers it"


@dataclass
class _Counts:
    units: int = 0
    unknown: int = 0
    scripts: set[str] = field(default_factory=set)
    covered: set[str] = field(default_factory=set)  # scripts with a character read as known
    samples: list[str] = field(default_factory=list)

    def sample(self, text: str) -> None:
        text = text.strip()
        if text and text not in self.samples and len(self.samples) < MAX_SAMPLES:
            self.samples.append(text)


def _tokenizer(tokenizer_or_model: Any) -> Any:
    return getattr(tokenizer_or_model, "tokenizer", tokenizer_or_model)


def _encode(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _letters(text: str) -> Iterable[tuple[str, str]]:
    for ch in text:
        script = script_of(ch)
        if script is not None:
            yield ch, script


def _count_fast(tok: Any, text: str, out: _Counts) -> None:
    """Unknown tokens from the offsets: a letter is read when a known token covers it."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    unk = tok.unk_token_id
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        out.units += 1
        piece = text[start:end]
        if token_id == unk:
            out.unknown += 1
            out.sample(piece)
        else:
            out.covered.update(script for _, script in _letters(piece))


def _count_slow(tok: Any, text: str, out: _Counts, known_char: dict[str, bool]) -> None:
    """Slow (SentencePiece) tokenizers give no offsets: count unknown ids over the text and
    test each distinct letter alone (its pieces hold no unknown id)."""
    unk = tok.unk_token_id
    ids = _encode(tok, text)
    out.units += len(ids)
    out.unknown += sum(1 for i in ids if i == unk)
    for ch, script in _letters(text):
        if ch not in known_char:
            pieces = _encode(tok, ch)
            known_char[ch] = bool(pieces) and unk not in pieces
        if known_char[ch]:
            out.covered.add(script)
    if unk in ids:
        for word in text.split():
            if unk in _encode(tok, word):
                out.sample(word)
            if len(out.samples) >= MAX_SAMPLES:
                break


def _count_roundtrip(tok: Any, text: str, out: _Counts, known_char: dict[str, bool]) -> None:
    """No unknown token (byte-level BPE): characters that do not come back from decode."""
    original = "".join(text.split())
    back = "".join(tok.decode(_encode(tok, text), skip_special_tokens=True).split())
    matcher = SequenceMatcher(None, original, back, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    out.units += len(original)
    out.unknown += len(original) - kept
    for ch, script in _letters(text):
        if ch not in known_char:
            known_char[ch] = tok.decode(_encode(tok, ch), skip_special_tokens=True).strip() == ch
        if known_char[ch]:
            out.covered.add(script)
        else:
            out.sample(ch)


def _counts(texts: Sequence[str], tokenizer_or_model: Any) -> list[_Counts]:
    tok = _tokenizer(tokenizer_or_model)
    known_char: dict[str, bool] = {}
    result = []
    for text in texts:
        c = _Counts(scripts={script for _, script in _letters(text)})
        if tok.unk_token_id is None:
            _count_roundtrip(tok, text, c, known_char)
        elif getattr(tok, "is_fast", False):
            _count_fast(tok, text, c)
        else:
            _count_slow(tok, text, c, known_char)
        result.append(c)
    return result


def _report(lang: str, counts: Sequence[_Counts], method: str) -> CoverageReport:
    units = sum(c.units for c in counts)
    unknown = sum(c.unknown for c in counts)
    scripts = set().union(*(c.scripts for c in counts)) if counts else set()
    covered = set().union(*(c.covered for c in counts)) if counts else set()
    samples: list[str] = []
    for c in counts:
        samples += [s for s in c.samples if s not in samples]
    return CoverageReport(
        lang=lang,
        unk_rate=unknown / units if units else 0.0,
        uncovered_scripts=sorted(scripts - covered),
        samples=samples[:MAX_SAMPLES],
        units=units,
        unknown=unknown,
        method=method,
    )


def _method(tokenizer_or_model: Any) -> str:
    return "roundtrip" if _tokenizer(tokenizer_or_model).unk_token_id is None else "unk"


def coverage_report(
    texts: Sequence[str], tokenizer_or_model: Any, lang: str = "?"
) -> CoverageReport:
    """Coverage of ``texts`` (one language) by a tokenizer or a ``LoadedModel``'s tokenizer."""
    return _report(lang, _counts(texts, tokenizer_or_model), _method(tokenizer_or_model))


def coverage_per_text(
    texts: Sequence[str], tokenizer_or_model: Any, lang: str = "?"
) -> list[CoverageReport]:
    """One report per text (the per-item check); tokenizes each text once."""
    method = _method(tokenizer_or_model)
    return [_report(lang, [c], method) for c in _counts(texts, tokenizer_or_model)]


def coverage_check(report: CoverageReport, *, max_unk_rate: float = 0.01) -> Check:
    """The per-item check (severity warning) for one text's report."""
    if not report.has_problem(max_unk_rate):
        return Check(
            name="tokenizer_coverage",
            passed=True,
            detail=f"{report.unknown} of {report.units} unknown",
            severity="warning",
        )
    detail = f"{report.unk_rate:.0%} unknown ({report.unknown} of {report.units})"
    if report.uncovered_scripts:
        detail += f"; scripts not covered: {', '.join(report.uncovered_scripts)}"
    if report.samples:
        detail += f"; e.g. {', '.join(repr(s) for s in report.samples)}"
    return Check(name="tokenizer_coverage", passed=False, detail=detail, severity="warning")


def coverage_reports(
    examples: Sequence[Any], lm: Any, *, default_lang: str | None = None
) -> list[CoverageReport]:
    """One report per source language of translation examples (``source``, ``source_lang``)."""
    by_lang: dict[str, list[str]] = {}
    for ex in examples:
        lang = getattr(ex, "source_lang", None) or default_lang or "unknown"
        by_lang.setdefault(lang, []).append(ex.source)
    return [coverage_report(texts, lm, lang) for lang, texts in by_lang.items()]


def coverage_warnings(
    examples: Sequence[Any],
    lm: Any,
    *,
    default_lang: str | None = None,
    max_unk_rate: float = 0.01,
) -> list[str]:
    """File-level warnings for the pipeline's report: one line per source language whose
    text the model's tokenizer cannot fully read (empty when all is covered)."""
    name = getattr(lm, "name", "the model")
    return [
        r.message(name)
        for r in coverage_reports(examples, lm, default_lang=default_lang)
        if r.has_problem(max_unk_rate)
    ]
