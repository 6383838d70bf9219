"""Remove training rows whose label is wrong, useless or repeated: ``clean_labels``.

Each rule has a stable name; every removed row is reported with the rule and why, and a
rule that removes a large share of a task's rows raises a warning (the rule is probably
wrong for that data, not the data for the rule). Rules run in the order of the table:
the cheap per-row rules first, then duplicates among the rows that survived them.

| rule                  | tasks               | removes a row (or one reference) when       |
|-----------------------|---------------------|---------------------------------------------|
| empty_label           | all                 | the label is missing or blank               |
| copied_source         | translate summarize | the label repeats the input                 |
| wrong_language        | translate summarize | the label is in another script or language  |
| length_ratio          | translate           | target/source chars outside band or outlier |
| answer_not_in_context | qa                  | the answer does not occur in the context    |
| summary_not_shorter   | summarize           | the summary is not shorter than the document |
| code_does_not_parse   | codegen             | prompt + completion is not valid Python     |
| duplicate             | all                 | same input and label as an earlier row      |
| near_duplicate        | all                 | same label, input similarity ≥ threshold    |

Texts compare case-folded with whitespace collapsed (``copied_source`` and
``near_duplicate`` also ignore punctuation). The length-ratio outliers are robust
z-scores of the log ratio against the file's median and MAD (files of 30+ rows).
Rows with several references (summaries, QA answers) lose only their bad references (the
``trimmed`` counts); the row goes when none is left. Near duplicates are found with
character 3-gram Jaccard similarity inside groups of equal label (QA: equal answer and
context, comparing questions); large groups use MinHash banding, so the cost grows with
the rows, not their pairs.
"""

from __future__ import annotations

import ast
import math
import re
import statistics
import zlib
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from taskloop.data.records import (
    CodegenExample,
    Example,
    QAExample,
    SummarizeExample,
    TranslateExample,
)
from taskloop.log import step
from taskloop.tasks.coverage import script_of
from taskloop.train.errors import TrainConfigError

RULES: tuple[str, ...] = (
    "empty_label",
    "copied_source",
    "wrong_language",
    "length_ratio",
    "answer_not_in_context",
    "summary_not_shorter",
    "code_does_not_parse",
    "duplicate",
    "near_duplicate",
)

# Robust outliers of the length ratio: |log ratio - median| / (1.4826 * MAD) above this,
# judged only in files with enough rows and on sources long enough for a stable ratio.
MAX_ROBUST_Z = 6.0
MIN_ROWS_FOR_ROBUST = 30
MIN_CHARS_FOR_ROBUST = 20
MIN_CHARS_FOR_BAND = 10  # "Ja." for "Yes." says nothing about the length ratio
MIN_WORDS_FOR_COPY = 3  # a name or a one-word title may translate to itself
# Majority of a file's targets that fixes the expected language when rows do not say.
MIN_ROWS_FOR_MAJORITY = 10
MAJORITY_SHARE = 0.8
SMALL_GROUP = 16  # groups up to this size compare every pair; larger ones use MinHash


@dataclass(frozen=True)
class Removal:
    """One removed row: which, where, by which rule, and why."""

    id: str
    where: str
    task: str
    rule: str
    detail: str


@dataclass
class CleanReport:
    """What :func:`clean_labels` kept and removed.

    ``trimmed`` counts references (summaries, QA answers) dropped by a rule from rows
    that were kept with their other references.
    """

    kept: list[Example]
    removed: list[Removal]
    counts: dict[str, int]
    total: int
    warnings: list[str] = field(default_factory=list)
    trimmed: dict[str, int] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": len(self.kept),
            "removed": [asdict(r) for r in self.removed],
            "counts": dict(self.counts),
            "trimmed": dict(self.trimmed),
            "warnings": list(self.warnings),
            "rules": list(self.rules),
        }

    def summary(self) -> str:
        by_rule = ", ".join(f"{rule} {n}" for rule, n in self.counts.items() if n)
        text = f"cleaned {self.total} rows: kept {len(self.kept)}, removed {len(self.removed)}"
        if by_rule:
            text += f" ({by_rule})"
        trimmed = sum(self.trimmed.values())
        if trimmed:
            text += f"; {trimmed} reference(s) trimmed"
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text


def clean_labels(
    examples: Sequence[Example],
    *,
    rules: Collection[str] | None = None,
    near_duplicate_threshold: float = 0.9,
    length_ratio: tuple[float, float] = (0.3, 3.0),
    warn_share: float = 0.2,
    target_lang: str | None = None,
) -> CleanReport:
    """Remove rows with bad labels, then duplicates among the rows left.

    Args:
        rules: the rules to apply (names from :data:`RULES`); None applies all.
        near_duplicate_threshold: character 3-gram Jaccard similarity of the inputs at
            or above which two rows with the same label are near duplicates.
        length_ratio: the band (low, high) of target/source characters for translation.
        warn_share: warn when one rule removes more than this share of a task's rows.
        target_lang: the language of every label when rows do not say (translation
            rows use their ``target_lang`` first, then their file's majority language;
            summaries their document's language).

    Returns:
        A :class:`CleanReport`; ``kept`` keeps the input order.

    Raises:
        TrainConfigError: an unknown rule name or an impossible threshold or band.
    """
    active = _check_args(rules, near_duplicate_threshold, length_ratio, warn_share)
    with step("clean_labels", rows=len(examples), rules=len(active)) as info:
        removed: list[Removal] = []
        trimmed: Counter[str] = Counter()
        context = _FileContext.build(examples, target_lang) if active & _NEEDS_CONTEXT else None
        survivors: list[Example] = []
        for ex in examples:
            kept, removal = _row_rules(ex, active, length_ratio, context, target_lang, trimmed)
            if removal is not None:
                removed.append(removal)
            elif kept is not None:
                survivors.append(kept)
        if "duplicate" in active:
            survivors = _drop_duplicates(survivors, removed)
        if "near_duplicate" in active:
            survivors = _drop_near_duplicates(survivors, near_duplicate_threshold, removed)
        counts = {rule: 0 for rule in RULES if rule in active}
        for r in removed:
            counts[r.rule] += 1
        report = CleanReport(
            kept=survivors,
            removed=removed,
            counts=counts,
            total=len(examples),
            warnings=_warnings(examples, removed, warn_share),
            trimmed=dict(trimmed),
            rules=[rule for rule in RULES if rule in active],
        )
        info.update(kept=len(survivors), removed=len(removed))
    return report


def _check_args(
    rules: Collection[str] | None,
    threshold: float,
    band: tuple[float, float],
    warn_share: float,
) -> set[str]:
    if isinstance(rules, str):
        rules = [rules]  # one name, not a set of letters
    chosen = set(RULES if rules is None else rules)
    unknown = sorted(chosen - set(RULES))
    if unknown:
        raise TrainConfigError(
            f"unknown cleaning rule(s): {', '.join(map(repr, unknown))}; "
            f"known rules: {', '.join(RULES)}",
            hint="pass rule names from taskloop.data.cleaning.RULES, or None for all",
        )
    if not 0.0 < threshold <= 1.0:
        raise TrainConfigError(
            f"near_duplicate_threshold must be in (0, 1], not {threshold}",
            hint="0.9 removes rows whose inputs share 90% of their character 3-grams",
        )
    low, high = band
    if not 0.0 < low < high:
        raise TrainConfigError(
            f"length_ratio must be (low, high) with 0 < low < high, not {band}",
            hint="the default (0.3, 3.0) allows a target from 0.3 to 3 times the source",
        )
    if not 0.0 < warn_share <= 1.0:
        raise TrainConfigError(f"warn_share must be in (0, 1], not {warn_share}")
    return chosen


# --- normalisation ---------------------------------------------------------------------


def _norm(text: str) -> str:
    """Case-folded, whitespace collapsed: what "the same text" means here."""
    return " ".join(text.casefold().split())


def _bare(text: str) -> str:
    """Case-folded words only: punctuation and spacing do not make texts differ."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def _iso(lang: str | None) -> str | None:
    """ "de-DE", "de_DE", "DE" → "de"."""
    if not lang:
        return None
    return re.split(r"[-_]", lang.strip())[0].lower() or None


def _label_input(ex: Example) -> tuple[str, tuple[str, ...]]:
    """The input text and the label texts of a row, as used by the duplicate rules."""
    if isinstance(ex, TranslateExample):
        return ex.source, (ex.target or "",)
    if isinstance(ex, SummarizeExample):
        return ex.document, tuple(sorted(_norm(s) for s in ex.summaries))
    if isinstance(ex, QAExample):
        label = tuple(sorted(_norm(a) for a in ex.answers)) or ("<no answer>",)
        return ex.question + "\n" + ex.context, label
    return ex.prompt, (ex.completion or "",)


# --- language and script ---------------------------------------------------------------

# Expected scripts of a language's letters (names as in coverage.SCRIPTS).
LANG_SCRIPTS: dict[str, frozenset[str]] = {
    **{
        lang: frozenset({"LATIN"})
        for lang in (  # noqa: SIM905 - a code list reads better as prose
            "en de fr es it pt nl sv da nb no fi et lt lv pl cs sk sl hr ro hu tr id vi sw "
            "ca eu gl af sq is ga cy mt ms tl"
        ).split()
    },
    **{lang: frozenset({"CYRILLIC"}) for lang in ("ru", "uk", "bg", "be", "sr", "mk", "kk")},
    "el": frozenset({"GREEK"}),
    "he": frozenset({"HEBREW"}),
    "ar": frozenset({"ARABIC"}),
    "fa": frozenset({"ARABIC"}),
    "ur": frozenset({"ARABIC"}),
    "hi": frozenset({"DEVANAGARI"}),
    "mr": frozenset({"DEVANAGARI"}),
    "ne": frozenset({"DEVANAGARI"}),
    "bn": frozenset({"BENGALI"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "th": frozenset({"THAI"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "zh": frozenset({"CJK"}),
    "ja": frozenset({"HIRAGANA", "KATAKANA", "CJK"}),
    "ko": frozenset({"HANGUL", "CJK"}),
}

# Frequent function words per language. A word listed for two languages counts for both,
# so it cannot tell them apart; words that are also common English content words ("hat",
# "man", "fast") are left out so that English names and loan words do not vote.
_PROFILE_WORDS = {
    "en": "the a an and in on is are was were of to with his her they this that at while who "
    "what from for has have he she it be by not or you we there their which into its as two "
    "three near some during behind between through against without until next each other but no "
    "one all any if so than then can could would should will just also only after before "
    "over out up down",
    "de": "der die das und ist sind ein eine einem einen einer eines mit auf von zu den dem "
    "des an in nicht sich im auch für bei wird werden sie er es aus nach wie oder aber ihr "
    "ihre sein seine seinem seiner am zum zur beim vom einige zwei drei vor über unter mehrere "
    "viele vielen beiden etwas diese dieser dieses ihren ihrem ihm ihn wir ich du nur noch "
    "schon sehr hier dort mehr während neben hinter zwischen durch gegen ohne um bis",
    "fr": "le la les et est sont un une des du au aux avec dans sur pour par qui que ce "
    "cette il elle ils pas ne son sa ses leur en deux trois",
    "es": "el los las y es son un una con por para del al que se su sus está están lo como "
    "pero muy en dos tres",
    "it": "il lo gli le e è sono un una uno con per del della dei delle che di nel nella "
    "sul sulla non si al alla in due tre",
    "nl": "de het een en is zijn van met op voor niet dat die er aan bij naar ook wordt "
    "worden hij zij maar door in twee drie",
    "pt": "o os a as e é um uma com por para do da dos das no na nos nas que em não se seu "
    "sua está estão dois três",
}
PROFILE: dict[str, frozenset[str]] = {
    lang: frozenset(words.split()) for lang, words in _PROFILE_WORDS.items()
}
_TOKEN = re.compile(r"\w+", re.UNICODE)


_LANGS_OF: dict[str, tuple[str, ...]] = {
    w: tuple(lang for lang, words in PROFILE.items() if w in words)
    for w in set().union(*PROFILE.values())
}


def _profile_hits(text: str, *, exclusive: bool = False) -> Counter[str]:
    """How many of the text's words each language of :data:`PROFILE` lists (with
    ``exclusive``, only words that no other language lists)."""
    hits: Counter[str] = Counter()
    for word in _TOKEN.findall(text.casefold()):
        langs = _LANGS_OF.get(word)
        if langs and (len(langs) == 1 or not exclusive):
            hits.update(langs)
    return hits


def detect_language(text: str, *, min_hits: int = 2) -> str | None:
    """The language whose function words the text uses most, or None when unsure.

    Sure means at least ``min_hits`` function words of the winner and at least twice as
    many as of any other language. Only the languages of :data:`PROFILE` are known.
    """
    ranked = _profile_hits(text).most_common(2)
    if not ranked:
        return None
    best, n = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0
    return best if n >= min_hits and n >= 2 * second else None


# A text has few distinct characters and unicodedata.name is slow: remember each one.
_script = lru_cache(maxsize=16384)(script_of)


def _scripts(text: str) -> Counter[str]:
    counts = Counter(text)
    out: Counter[str] = Counter()
    for ch, n in counts.items():
        script = _script(ch)
        if script is not None:
            out[script] += n
    return out


def dominant_script(text: str) -> tuple[str | None, float]:
    """The most frequent script among the letters of ``text`` and its share of them."""
    scripts = _scripts(text)
    if not scripts:
        return None, 0.0
    script, n = scripts.most_common(1)[0]
    return script, n / sum(scripts.values())


def _script_share(text: str, expected: frozenset[str]) -> tuple[float, int, Counter[str]]:
    scripts = _scripts(text)
    total = sum(scripts.values())
    inside = sum(n for s, n in scripts.items() if s in expected)
    return (inside / total if total else 1.0), total, scripts


def language_problem(text: str, lang: str | None, scripts: frozenset[str] | None) -> str | None:
    """Why ``text`` is not in ``lang`` (or not in ``scripts``), None when it may be."""
    if scripts:
        share, letters, found = _script_share(text, scripts)
        if letters >= 3 and share < 0.5:
            main = ", ".join(s for s, _ in found.most_common(2))
            want = "/".join(sorted(scripts))
            return f"{1 - share:.0%} of its letters are {main}, not {want} ({lang or 'file'})"
    if lang in PROFILE:
        # None of the expected language's own function words, and another language's
        # (at least two, one of them its own): "in" or "a" alone decide nothing.
        hits, own = _profile_hits(text), _profile_hits(text, exclusive=True)
        if not own[lang]:
            for other, n in hits.most_common():
                if other != lang and n >= 2 and own[other] >= 2:
                    return f"no {lang} function words, {n} {other} ones"
    return None


@dataclass
class _FileContext:
    """Per-file facts the per-row rules compare a row against."""

    target_lang: dict[str, str]  # file → majority language of its translation targets
    target_script: dict[str, str]  # file → majority script of its translation targets
    log_ratios: dict[str, tuple[float, float]]  # file → (median, MAD) of log length ratios

    @classmethod
    def build(cls, examples: Sequence[Example], default_lang: str | None) -> _FileContext:
        langs: dict[str, Counter[str]] = defaultdict(Counter)
        scripts: dict[str, Counter[str]] = defaultdict(Counter)
        ratios: dict[str, list[float]] = defaultdict(list)
        for ex in examples:
            if not isinstance(ex, TranslateExample) or not ex.target or not ex.target.strip():
                continue
            file = ex.where.file
            if not (_iso(ex.target_lang) or _iso(default_lang)):
                lang = detect_language(ex.target)
                langs[file][lang or ""] += 1
                script, share = dominant_script(ex.target)
                if script is not None and share >= 0.5:
                    scripts[file][script] += 1
            n_src, n_tgt = len(ex.source.strip()), len(ex.target.strip())
            if n_src >= MIN_CHARS_FOR_ROBUST and n_tgt:
                ratios[file].append(math.log(n_tgt / n_src))
        return cls(
            target_lang=_majorities(langs),
            target_script=_majorities(scripts),
            log_ratios={
                f: (med, statistics.median(abs(x - med) for x in xs))
                for f, xs in ratios.items()
                if len(xs) >= MIN_ROWS_FOR_ROBUST
                for med in [statistics.median(xs)]
            },
        )


def _majorities(counts: dict[str, Counter[str]]) -> dict[str, str]:
    out = {}
    for file, c in counts.items():
        total = sum(c.values())
        value, n = c.most_common(1)[0]
        if value and total >= MIN_ROWS_FOR_MAJORITY and n / total >= MAJORITY_SHARE:
            out[file] = value
    return out


_NEEDS_CONTEXT = frozenset({"wrong_language", "length_ratio"})


# --- per-row rules ---------------------------------------------------------------------


def _row_rules(
    ex: Example,
    active: set[str],
    band: tuple[float, float],
    context: _FileContext | None,
    default_lang: str | None,
    trimmed: Counter[str],
) -> tuple[Example | None, Removal | None]:
    """Apply the per-row rules in table order: (the row to keep, or why it goes)."""

    def gone(rule: str, detail: str) -> tuple[None, Removal]:
        return None, Removal(ex.id, str(ex.where), ex.task, rule, detail)

    if isinstance(ex, TranslateExample):
        problem = _translate_problem(ex, active, band, context, default_lang)
        return gone(*problem) if problem else (ex, None)
    if isinstance(ex, CodegenExample):
        if "empty_label" in active and not (ex.completion or "").strip():
            return gone("empty_label", "no completion" if ex.completion is None else "blank")
        if "code_does_not_parse" in active:
            try:
                ast.parse(ex.prompt + (ex.completion or ""))
            except SyntaxError as exc:
                return gone("code_does_not_parse", f"line {exc.lineno}: {exc.msg}")
        return ex, None
    if isinstance(ex, QAExample):
        if ex.is_impossible and not ex.answers:
            return ex, None  # "no answer" is the label
        checks = [("empty_label", lambda a: bool(a.strip()), "blank answer")]
        if "answer_not_in_context" in active:
            ctx = _norm(ex.context)
            checks.append(
                ("answer_not_in_context", lambda a: _norm(a) in ctx, "answer not in the context")
            )
        answers, problem = _filter_refs(list(ex.answers), checks, active, trimmed, "answers")
        if problem:
            return gone(*problem)
        return (ex.model_copy(update={"answers": answers}) if answers != ex.answers else ex), None
    doc = _bare(ex.document)
    lang = _iso(default_lang)
    scripts = LANG_SCRIPTS.get(lang or "")
    if lang is None:
        # A summary is in the language and script of its document.
        lang = detect_language(ex.document)
        script, share = dominant_script(ex.document)
        scripts = frozenset({script}) if script is not None and share >= 0.8 else None
    checks = [
        ("empty_label", lambda s: bool(s.strip()), "blank summary"),
        ("copied_source", lambda s: _bare(s) != doc, "the summary repeats the document"),
        (
            "wrong_language",
            lambda s: language_problem(s, lang, scripts) is None,
            "summary in another language or script",
        ),
        (
            "summary_not_shorter",
            lambda s: len(s.strip()) < len(ex.document.strip()),
            f"not shorter than the document ({len(ex.document.strip())} chars)",
        ),
    ]
    summaries, problem = _filter_refs(list(ex.summaries), checks, active, trimmed, "summaries")
    if problem:
        return gone(*problem)
    if summaries != ex.summaries:
        return ex.model_copy(update={"summaries": summaries}), None
    return ex, None


def _filter_refs(
    refs: list[str],
    checks: list[tuple[str, Any, str]],
    active: set[str],
    trimmed: Counter[str],
    what: str,
) -> tuple[list[str], tuple[str, str] | None]:
    """Drop references failing an active check; the row fails on the check that took
    the last one (its detail counts how many each check dropped)."""
    if "empty_label" in active and not refs:
        return refs, ("empty_label", f"no {what}")
    dropped: Counter[str] = Counter()
    last = ("", "")
    for rule, ok, detail in checks:
        if rule not in active or not refs:
            continue
        keep = [r for r in refs if ok(r)]
        if len(keep) < len(refs):
            dropped[rule] += len(refs) - len(keep)
            bad = next(r for r in refs if r not in keep)
            last = (rule, f"{detail}: {_clip(bad)!r}")
        refs = keep
    if not refs:
        n = sum(dropped.values())
        return refs, (last[0], last[1] + (f" (none of {n} {what} left)" if n > 1 else ""))
    trimmed.update(dropped)
    return refs, None


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _translate_problem(
    ex: TranslateExample,
    active: set[str],
    band: tuple[float, float],
    context: _FileContext | None,
    default_lang: str | None,
) -> tuple[str, str] | None:
    target = ex.target or ""
    if not target.strip():
        if "empty_label" not in active:
            return None
        return "empty_label", "no target" if ex.target is None else "blank target"
    if "copied_source" in active and _copies(ex.source, target):
        return "copied_source", "the target repeats the source"
    if "wrong_language" in active and context is not None:
        file = ex.where.file
        lang = _iso(ex.target_lang) or _iso(default_lang) or context.target_lang.get(file)
        scripts = LANG_SCRIPTS.get(lang or "")
        if scripts is None and file in context.target_script:
            scripts = frozenset({context.target_script[file]})
        problem = language_problem(target, lang, scripts)
        if problem:
            return "wrong_language", f"target: {problem}"
    if "length_ratio" in active:
        problem = _ratio_problem(ex, band, context)
        if problem:
            return "length_ratio", problem
    return None


def _copies(source: str, target: str) -> bool:
    """The target is the source, or the source with a few characters around it."""
    src, tgt = _bare(source), _bare(target)
    if len(src.split()) < MIN_WORDS_FOR_COPY:
        return False
    return src == tgt or (src in tgt and len(src) >= 0.8 * len(tgt))


def _ratio_problem(
    ex: TranslateExample, band: tuple[float, float], context: _FileContext | None
) -> str | None:
    n_src, n_tgt = len(ex.source.strip()), len((ex.target or "").strip())
    ratio = n_tgt / max(n_src, 1)
    low, high = band
    if max(n_src, n_tgt) >= MIN_CHARS_FOR_BAND and not low <= ratio <= high:
        return f"target/source ratio {ratio:.2f} ({n_tgt}/{n_src} chars) outside {low}–{high}"
    stats = context.log_ratios.get(ex.where.file) if context else None
    if stats and n_src >= MIN_CHARS_FOR_ROBUST and n_tgt:
        median, mad = stats
        if mad > 1e-9:
            z = (math.log(ratio) - median) / (1.4826 * mad)
            if abs(z) > MAX_ROBUST_Z:
                return (
                    f"target/source ratio {ratio:.2f} is a robust outlier of its file "
                    f"(z = {z:+.1f}, median ratio {math.exp(median):.2f}, limit ±{MAX_ROBUST_Z})"
                )
    return None


# --- duplicates ------------------------------------------------------------------------


def _drop_duplicates(rows: list[Example], removed: list[Removal]) -> list[Example]:
    first: dict[tuple[str, str, tuple[str, ...]], Example] = {}
    kept = []
    for ex in rows:
        text, label = _label_input(ex)
        key = (ex.task, _norm(text), tuple(_norm(x) for x in label))
        if key in first:
            other = first[key]
            removed.append(
                Removal(
                    ex.id,
                    str(ex.where),
                    ex.task,
                    "duplicate",
                    f"same input and label as {other.id} ({other.where})",
                )
            )
            continue
        first[key] = ex
        kept.append(ex)
    return kept


def _near_key(ex: Example) -> tuple[tuple[str, ...], str]:
    """(group key, text to compare): rows are compared only inside one group."""
    text, label = _label_input(ex)
    if isinstance(ex, QAExample):
        # Questions about one context with one answer: compare the questions, since the
        # shared context would make any two of them look alike.
        return (ex.task, _bare(ex.context), *label), _bare(ex.question)
    return (ex.task, *(_bare(x) for x in label)), _bare(text)


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """Character n-grams of ``text`` (the text itself when shorter than ``n``)."""
    if len(text) < n:
        return frozenset({text})
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _drop_near_duplicates(
    rows: list[Example], threshold: float, removed: list[Removal]
) -> list[Example]:
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    texts: list[str] = []
    for i, ex in enumerate(rows):
        key, text = _near_key(ex)
        groups[key].append(i)
        texts.append(text)
    gone: dict[int, tuple[int, float]] = {}  # row → (the earlier row it repeats, similarity)
    for members in groups.values():
        if len(members) > 1:
            gone.update(_near_in_group(members, texts, threshold))
    kept = []
    for i, ex in enumerate(rows):
        if i in gone:
            j, sim = gone[i]
            other = rows[j]
            removed.append(
                Removal(
                    ex.id,
                    str(ex.where),
                    ex.task,
                    "near_duplicate",
                    f"same label as {other.id} ({other.where}), input similarity {sim:.2f}",
                )
            )
        else:
            kept.append(ex)
    return kept


def _near_in_group(
    members: list[int], texts: list[str], threshold: float
) -> dict[int, tuple[int, float]]:
    """Rows of one group that repeat an earlier kept row of it (first one wins)."""
    sets = {i: shingles(texts[i]) for i in members}
    out: dict[int, tuple[int, float]] = {}
    kept: list[int] = []
    lsh = _MinHashIndex(threshold) if len(members) > SMALL_GROUP else None
    for i in members:
        candidates = lsh.candidates(sets[i]) if lsh is not None else kept
        # The most similar earlier row; on a tie the earliest.
        best = max(((jaccard(sets[i], sets[j]), -j) for j in candidates), default=(0.0, 1))
        if best[0] >= threshold:
            out[i] = (-best[1], best[0])
            continue
        kept.append(i)
        if lsh is not None:
            lsh.add(i, sets[i])
    return out


class _MinHashIndex:
    """MinHash signatures in bands: rows sharing a band are candidates to verify exactly.

    With ``rows`` hash values per band and ``bands`` bands, two sets of Jaccard similarity
    s share a band with probability 1 - (1 - s^rows)^bands; the widest band that still
    finds pairs at the threshold with probability ≥ 0.995 keeps the candidates few.
    """

    PERMUTATIONS = 64
    PRIME = (1 << 31) - 1

    def __init__(self, threshold: float) -> None:
        import numpy as np

        self.rows = 1
        for r in (2, 4, 8, 16):
            if 1 - (1 - threshold**r) ** (self.PERMUTATIONS // r) >= 0.995:
                self.rows = r
        rng = np.random.default_rng(0)
        self.a = rng.integers(1, self.PRIME, self.PERMUTATIONS, dtype=np.int64)
        self.b = rng.integers(0, self.PRIME, self.PERMUTATIONS, dtype=np.int64)
        self.buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)

    def _bands(self, items: frozenset[str]) -> list[tuple[int, bytes]]:
        import numpy as np

        # crc32, not hash(): str hashes change between processes, signatures must not.
        h = np.fromiter(
            (zlib.crc32(s.encode()) % self.PRIME for s in items), dtype=np.int64, count=len(items)
        )
        sig = ((self.a[:, None] * h[None, :] + self.b[:, None]) % self.PRIME).min(axis=1)
        r = self.rows
        return [(k, sig[k * r : (k + 1) * r].tobytes()) for k in range(self.PERMUTATIONS // r)]

    def candidates(self, items: frozenset[str]) -> list[int]:
        found: dict[int, None] = {}
        for band in self._bands(items):
            found.update(dict.fromkeys(self.buckets.get(band, ())))
        return list(found)

    def add(self, index: int, items: frozenset[str]) -> None:
        for band in self._bands(items):
            self.buckets[band].append(index)


# --- warnings --------------------------------------------------------------------------


def _warnings(examples: Sequence[Example], removed: list[Removal], share: float) -> list[str]:
    per_task: Counter[str] = Counter(ex.task for ex in examples)
    by_rule = Counter((r.task, r.rule) for r in removed)
    out = []
    for (task, rule), n in sorted(
        by_rule.items(), key=lambda kv: (kv[0][0], RULES.index(kv[0][1]))
    ):
        if n / per_task[task] > share:
            out.append(
                f"rule {rule} removed {n / per_task[task]:.0%} of {task} rows "
                f"({n} of {per_task[task]}): check the data or disable the rule"
            )
    return out
