"""Add label-preserving variants of training rows: ``data_augmentation``.

Each method changes only the input side of a row, in a way that keeps its label right,
and drops a variant it cannot vouch for. New rows get the id ``<id>#aug-<method>-<n>``
and the ``where`` of the row they came from.

| method             | tasks                  | the new row's input                     |
|--------------------|------------------------|-----------------------------------------|
| synonym            | translate summarize qa | 1–2 words replaced by synonyms          |
| back_translation   | translate              | the target translated back (a model)    |
| paraphrase         | translate summarize qa | source, document or question rewritten  |
| rename_identifiers | codegen                | local variables and arguments renamed   |

``back_translation`` needs ``back_translation_model`` and ``paraphrase`` needs
``paraphrase_model``; without one the method is skipped and the report says why. A model's
output is dropped when empty, cut (the input exceeded the window), equal to the input it
would replace (or, back-translated, to the target), or of implausible length (outside a
third to three times the old input; under half, for a document). A paraphrased QA
question is kept only while every answer still occurs in the unchanged context.

Synonyms keep the label right this way: in a translation source a word is replaced only
when the target holds one of its dictionary translations and the synonym shares that
translation; in a document or a question only words that the summaries or answers do not
use are replaced. Synonyms come from ``synonyms`` when given, else WordNet (nltk, when its
data is installed), else from the bilingual dictionary (two English words with a common
German translation are synonyms).

``ratio`` is the number of rows to add per row of a task (0.2 adds one for every five);
the methods that apply to a task share its quota, and what one method cannot supply the
next ones try to. The result is the same for the same rows, settings and ``seed``.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import keyword
import math
import random
import re
import token
import tokenize
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloop.data.pairs import origin_of as origin_of  # re-exported: part of this API
from taskloop.data.records import (
    CodegenExample,
    Example,
    QAExample,
    SummarizeExample,
    TaskName,
    TranslateExample,
)
from taskloop.log import step
from taskloop.tasks.glossary import align, english_forms
from taskloop.tasks.glossary import load_dictionary as _load_dictionary
from taskloop.tasks.text import STOPWORDS
from taskloop.train.errors import TrainConfigError

if TYPE_CHECKING:
    from taskloop.models.generate import GenerationSettings
    from taskloop.models.loader import LoadedModel

METHODS: dict[str, tuple[TaskName, ...]] = {
    "synonym": ("translate", "summarize", "qa"),
    "back_translation": ("translate",),
    "paraphrase": ("translate", "summarize", "qa"),
    "rename_identifiers": ("codegen",),
}
MAX_ID = 200  # records.Id
# A new input outside this share of the old one's characters is degenerate (a model
# repeating one word, or stopping early); a rewritten document below half lost content.
LENGTH_BAND = (1 / 3, 3.0)
MIN_DOCUMENT_SHARE = 0.5
MAX_PASSES = 10  # rounds over the rows when the quota exceeds them (cheap methods only)

Updates = dict[str, Any]  # the fields a variant changes
Variants = Callable[[list[Example], random.Random], list[Updates | None]]


@dataclass
class AugmentReport:
    """What :func:`data_augmentation` added, per method, and why a method added nothing.

    ``wanted`` is the quota per task (``round(ratio * rows)``).
    """

    added: list[Example]
    counts: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        by_task = Counter(ex.task for ex in self.added)
        return {
            "added": len(self.added),
            "by_task": dict(by_task),
            "wanted": dict(self.wanted),
            "counts": dict(self.counts),
            "skipped": dict(self.skipped),
            "ids": [ex.id for ex in self.added],
        }

    def summary(self) -> str:
        parts = ", ".join(f"{m} {n}" for m, n in self.counts.items())
        return f"added {len(self.added)} rows ({parts or 'no method ran'})"


def data_augmentation(
    examples: Sequence[Example],
    *,
    ratio: float = 0.2,
    methods: Collection[str] = ("synonym", "rename_identifiers"),
    dictionary: Mapping[str, Sequence[str]] | None = None,
    back_translation_model: LoadedModel | None = None,
    paraphrase_model: LoadedModel | None = None,
    seed: int = 0,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    use_wordnet: bool = True,
    back_translation_settings: GenerationSettings | None = None,
    paraphrase_settings: GenerationSettings | None = None,
) -> AugmentReport:
    """New rows made from ``examples`` by label-preserving changes of their inputs.

    Args:
        ratio: rows to add per row of each task (about; fewer when the methods run dry).
        methods: names from :data:`METHODS`, tried in this order for each task.
        dictionary: English → translations (see :func:`load_dictionary`); translation
            rows need it for ``synonym``, and it supplies synonyms when nothing else does.
        back_translation_model: a model translating targets back into the source language.
        paraphrase_model: a seq2seq model that rewrites a text.
        synonyms: word → synonyms, used instead of WordNet and the dictionary.
        use_wordnet: False never asks WordNet (reproducible without its data).
        back_translation_settings, paraphrase_settings: decoding settings (a prefix such
            as ``"paraphrase: "``, a forced language token); defaults decode greedily.

    Returns:
        An :class:`AugmentReport`; ``added`` holds only the new rows.

    Raises:
        TrainConfigError: an unknown method or a negative ratio.
    """
    chosen = _check_args(methods, ratio)
    skipped: dict[str, str] = {}
    makers: dict[str, Variants] = {}
    if "synonym" in chosen:
        source, note = _synonym_source(synonyms, dictionary, use_wordnet)
        if note:
            skipped["synonym"] = note
        if source is not None:
            makers["synonym"] = _synonym_maker(source, dictionary)
    if "back_translation" in chosen:
        if back_translation_model is None:
            skipped["back_translation"] = "no model configured (pass back_translation_model)"
        else:
            makers["back_translation"] = _back_translation_maker(
                back_translation_model, back_translation_settings
            )
    if "paraphrase" in chosen:
        if paraphrase_model is None:
            skipped["paraphrase"] = "no model configured (pass paraphrase_model)"
        else:
            makers["paraphrase"] = _paraphrase_maker(paraphrase_model, paraphrase_settings)
    if "rename_identifiers" in chosen:
        makers["rename_identifiers"] = _rename_maker

    with step("data_augmentation", rows=len(examples), methods=",".join(chosen)) as info:
        by_task: dict[TaskName, list[Example]] = defaultdict(list)
        for ex in examples:
            by_task[ex.task].append(ex)
        added: list[Example] = []
        counts = {m: 0 for m in chosen}
        wanted: dict[str, int] = {}
        numbers: Counter[tuple[str, str]] = Counter()  # (id, method) → variants so far
        for task, rows in by_task.items():
            wanted[task] = round(ratio * len(rows))
            usable = [m for m in chosen if task in METHODS[m] and m in makers]
            labelled = [ex for ex in rows if _has_label(ex)]
            if not wanted[task] or not usable or not labelled:
                continue
            rng = random.Random(f"{seed}:{task}")  # a str seed hashes the same every run
            order = rng.sample(labelled, len(labelled))
            remaining = wanted[task]
            for k, method in enumerate(usable):
                quota = math.ceil(remaining / (len(usable) - k))
                # Each method starts at a different row, so a row rarely gets two.
                start = k * len(order) // len(usable)
                rotated = order[start:] + order[:start]
                passes = 1 if method in ("back_translation", "paraphrase") else MAX_PASSES
                for ex, updates in _fill(makers[method], rotated, quota, rng, passes):
                    numbers[(ex.id, method)] += 1
                    new_id = _new_id(ex.id, method, numbers[(ex.id, method)])
                    added.append(ex.model_copy(update={**updates, "id": new_id}))
                    counts[method] += 1
                    remaining -= 1
        for method in chosen:
            if counts[method] == 0 and method in makers:
                why = _why_nothing(method, by_task, wanted)
                skipped[method] = f"{skipped[method]}; {why}" if method in skipped else why
        info.update(added=len(added))
    return AugmentReport(added=added, counts=counts, skipped=skipped, wanted=wanted)


def _why_nothing(
    method: str, by_task: Mapping[TaskName, list[Example]], wanted: Mapping[str, int]
) -> str:
    tasks = [t for t in METHODS[method] if by_task.get(t)]
    if not tasks:
        return f"no {'/'.join(METHODS[method])} rows"
    if not any(wanted.get(t) for t in tasks):
        return "the ratio asks for no rows"
    return "no row gave a usable variant"


def _check_args(methods: Collection[str], ratio: float) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise TrainConfigError(
            f"unknown augmentation method(s): {', '.join(map(repr, unknown))}; "
            f"known methods: {', '.join(METHODS)}",
            hint="pass method names from taskloop.data.augment.METHODS",
        )
    if not (ratio >= 0 and math.isfinite(ratio)):
        raise TrainConfigError(
            f"augmentation ratio must be a finite number ≥ 0, not {ratio}",
            hint="0.2 adds one row for every five",
        )
    return list(dict.fromkeys(methods))


def _has_label(ex: Example) -> bool:
    if isinstance(ex, TranslateExample):
        return bool(ex.target and ex.target.strip())
    if isinstance(ex, SummarizeExample):
        return any(s.strip() for s in ex.summaries)
    if isinstance(ex, QAExample):
        return any(a.strip() for a in ex.answers) or bool(ex.is_impossible)
    return bool(ex.completion and ex.completion.strip())


def _new_id(old: str, method: str, n: int) -> str:
    suffix = f"#aug-{method}-{n}"
    if len(old) + len(suffix) <= MAX_ID:
        return old + suffix
    # Keep ids within the schema's limit and still unique per original id.
    digest = hashlib.sha1(old.encode()).hexdigest()[:10]  # noqa: S324 - a name, not security
    return old[: MAX_ID - len(suffix) - 11] + "~" + digest + suffix


def _fill(
    make: Variants, rows: list[Example], quota: int, rng: random.Random, passes: int
) -> list[tuple[Example, Updates]]:
    """Variants of ``rows`` until ``quota`` is met: distinct, in row order, in batches a
    little larger than what is missing (model methods drop some of their outputs).

    A row that gave nothing in one pass is not asked again: it has nothing to change.
    """
    out: list[tuple[Example, Updates]] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(passes):
        fruitful: list[Example] = []
        i = 0
        while i < len(rows) and len(out) < quota:
            need = quota - len(out)
            batch = rows[i : i + need + need // 2 + 1]
            i += len(batch)
            for ex, updates in zip(batch, make(batch, rng), strict=True):
                if updates is None:
                    continue
                fruitful.append(ex)
                key = (ex.id, repr(sorted(updates.items())))
                if key in seen:
                    continue
                seen.add(key)
                out.append((ex, updates))
                if len(out) == quota:
                    break
        if len(out) >= quota or not fruitful:
            break
        rows = fruitful
    return out


# --- dictionaries and synonyms ---------------------------------------------------------


def load_dictionary(path: str | Path) -> dict[str, list[str]]:
    """Read a bilingual dictionary TSV (``english<TAB>german`` per line, ``.gz`` allowed).

    Raises:
        GlossaryError: a malformed line (file and line named), or an unreadable file.
    """
    return {src: sorted(tgts) for src, tgts in _load_dictionary(path).items()}


def synonyms_from_bilingual(
    dictionary: Mapping[str, Sequence[str]], *, max_sources: int = 6
) -> dict[str, list[str]]:
    """English synonyms from a bilingual dictionary: words that share a translation.

    Only single lower-case words of three or more letters take part; a translation shared
    by more than ``max_sources`` English words is too vague to count, and a pair where
    one word starts with the other ("real", "realistic") is a derivation, not a synonym.
    """
    sources: dict[str, set[str]] = defaultdict(set)
    for english, translations in dictionary.items():
        if not (english.isalpha() and english.islower() and len(english) >= 3):
            continue
        for t in translations:
            if len(t) >= 3:
                sources[t].add(english)
    out: dict[str, set[str]] = defaultdict(set)
    for words in sources.values():
        if not 2 <= len(words) <= max_sources:
            continue
        for a in words:
            for b in words:
                if not (a.startswith(b) or b.startswith(a)):
                    out[a].add(b)
    return {w: sorted(s) for w, s in sorted(out.items())}


def wordnet_synonyms() -> Callable[[str], list[str]] | None:
    """A WordNet synonym lookup, or None when nltk or its WordNet data is missing."""
    try:
        from nltk.corpus import wordnet as wn

        wn.synsets("dog")  # the corpus loads lazily: a missing one raises only here
    except (ImportError, LookupError, OSError):
        return None

    def lookup(word: str) -> list[str]:
        names = [
            lemma.lower()
            for synset in wn.synsets(word)[:3]  # the commonest senses only
            for lemma in synset.lemma_names()
        ]
        return list(dict.fromkeys(n for n in names if n.isalpha() and n != word))

    return lookup


def _synonym_source(
    synonyms: Mapping[str, Sequence[str]] | None,
    dictionary: Mapping[str, Sequence[str]] | None,
    use_wordnet: bool,
) -> tuple[Callable[[str], list[str]] | None, str]:
    """(synonym lookup, a note for the report) from the first source available."""
    if synonyms is not None:
        table = {k.lower(): list(v) for k, v in synonyms.items()}
        return lambda w: table.get(w, []), ""
    wordnet = wordnet_synonyms() if use_wordnet else None
    if wordnet is not None:
        return wordnet, ""
    why = "WordNet data not installed" if use_wordnet else "WordNet not used (use_wordnet=False)"
    if dictionary:
        derived = synonyms_from_bilingual(dictionary)
        return lambda w: derived.get(w, []), f"{why}; used the dictionary"
    return None, f"{why} and no dictionary or synonyms given: no synonyms to use"


_WORD = re.compile(r"[^\W\d_]+")


def _synonym_maker(
    lookup: Callable[[str], list[str]], dictionary: Mapping[str, Sequence[str]] | None
) -> Variants:
    bilingual = {k.lower(): list(v) for k, v in (dictionary or {}).items()}

    def make(rows: list[Example], rng: random.Random) -> list[Updates | None]:
        return [_synonym_variant(ex, rng, lookup, bilingual) for ex in rows]

    return make


def _synonym_variant(
    ex: Example,
    rng: random.Random,
    lookup: Callable[[str], list[str]],
    bilingual: Mapping[str, list[str]],
) -> Updates | None:
    """Replace one or two words of the input side; None when no word may change."""
    if isinstance(ex, TranslateExample):
        if not bilingual or not ex.target:
            return None  # without a dictionary the target may no longer fit the source
        target = ex.target
        fld, text = "source", ex.source

        def allowed(word: str) -> list[str]:
            options = [s for s in lookup(word) if s in bilingual]
            if not options:
                return []
            # The target's translations of the word; a synonym must share one of them.
            present = {
                t for t in bilingual.get(word, []) if align(word, target, {word: {t}}).aligned
            }
            return [s for s in options if present & set(bilingual[s])]

    else:
        if isinstance(ex, SummarizeExample):
            fld, text, labels = "document", ex.document, ex.summaries
        elif isinstance(ex, QAExample):
            fld, text, labels = "question", ex.question, ex.answers
        else:
            return None
        used = {f for label in labels for w in _WORD.findall(label) for f in english_forms(w)}

        def allowed(word: str) -> list[str]:
            # A word the label uses stays, so the label stays supported by the input.
            if used & set(english_forms(word)):
                return []
            return [s for s in lookup(word) if not used & set(english_forms(s))]

    spots = []
    for m in _WORD.finditer(text):
        word = m.group()
        low = word.lower()
        if len(word) < 3 or low in STOPWORDS or not (word.islower() or word.istitle()):
            continue
        if word.istitle() and not _starts_sentence(text, m.start()):
            continue  # a capital inside a sentence: a name ("Paris", "Mike")
        options = sorted(set(allowed(low)) - {low})
        if options:
            spots.append((m.start(), m.end(), word, options))
    if not spots:
        return None
    chosen = rng.sample(spots, min(len(spots), rng.choice((1, 2))))
    out = text
    for start, end, word, options in sorted(chosen, reverse=True):
        new = rng.choice(options)
        out = out[:start] + (new.capitalize() if word.istitle() else new) + out[end:]
    return {fld: out}


def _starts_sentence(text: str, at: int) -> bool:
    i = at - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in ".!?"


# --- model methods ---------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _plausible(new: str, old: str, low: float = LENGTH_BAND[0]) -> bool:
    """Not empty, and of a length near the text it replaces."""
    return bool(new) and low <= len(new) / max(len(old.strip()), 1) <= LENGTH_BAND[1]


def _back_translation_maker(lm: LoadedModel, settings: GenerationSettings | None) -> Variants:
    def make(rows: list[Example], rng: random.Random) -> list[Updates | None]:
        from taskloop.models.generate import generate

        todo = [i for i, ex in enumerate(rows) if isinstance(ex, TranslateExample) and ex.target]
        targets = [str(getattr(rows[i], "target", "")) for i in todo]
        outs = dict(zip(todo, generate(lm, targets, settings or _settings()), strict=True))
        result: list[Updates | None] = []
        for i, ex in enumerate(rows):
            if i not in outs or not isinstance(ex, TranslateExample):
                result.append(None)
                continue
            gen = outs[i]
            text = gen.text.strip()
            # Empty, the source again (nothing new), or the target copied (would teach
            # the model to copy its input).
            same = _norm(text) in (_norm(ex.source), _norm(ex.target or ""))
            ok = _plausible(text, ex.source) and not gen.truncated and not same
            result.append({"source": text} if ok else None)
        return result

    return make


def _settings(max_new_tokens: int = 128) -> GenerationSettings:
    from taskloop.models.generate import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens)


def _paraphrase_maker(lm: LoadedModel, settings: GenerationSettings | None) -> Variants:
    def make(rows: list[Example], rng: random.Random) -> list[Updates | None]:
        from taskloop.models.generate import generate

        fields = [_paraphrase_field(ex) for ex in rows]
        todo = [i for i, f in enumerate(fields) if f is not None]
        texts = [getattr(rows[i], fields[i] or "") for i in todo]
        outs = dict(zip(todo, generate(lm, texts, settings or _settings(256)), strict=True))
        result: list[Updates | None] = []
        for i, ex in enumerate(rows):
            fld = fields[i]
            if fld is None:
                result.append(None)
                continue
            gen, old = outs[i], getattr(ex, fld)
            text = gen.text.strip()
            low = MIN_DOCUMENT_SHARE if isinstance(ex, SummarizeExample) else LENGTH_BAND[0]
            ok = _plausible(text, old, low) and not gen.truncated and _norm(text) != _norm(old)
            if isinstance(ex, QAExample):
                context = _norm(ex.context)
                ok = ok and all(_norm(a) in context for a in ex.answers)
            result.append({fld: text} if ok else None)
        return result

    return make


def _paraphrase_field(ex: Example) -> str | None:
    """The input field a paraphrase rewrites (the question, never a QA context)."""
    if isinstance(ex, TranslateExample):
        return "source"
    if isinstance(ex, SummarizeExample):
        return "document"
    if isinstance(ex, QAExample):
        return "question"
    return None


# --- rename_identifiers ----------------------------------------------------------------


@dataclass(frozen=True)
class Renamed:
    """Prompt and completion with local names renamed; ``mapping`` old → new."""

    prompt: str
    completion: str
    mapping: dict[str, str]


_NAME_POOL = (
    "value", "item", "elem", "acc", "cur", "res", "tmp", "data", "seq", "num", "idx",
    "key", "val", "obj", "out", "arg", "var", "part", "step", "entry",
)  # fmt: skip
_KEEP = frozenset({"self", "cls", "_"}) | frozenset(dir(builtins)) | frozenset(keyword.kwlist)


def _rename_maker(rows: list[Example], rng: random.Random) -> list[Updates | None]:
    out: list[Updates | None] = []
    for ex in rows:
        if not isinstance(ex, CodegenExample) or not ex.completion:
            out.append(None)
            continue
        avoid = set(re.findall(r"\w+", ex.test or ""))
        if ex.entry_point:
            avoid.add(ex.entry_point)
        done = rename_identifiers(
            ex.prompt, ex.completion, entry_point=ex.entry_point, rng=rng, avoid=avoid
        )
        out.append({"prompt": done.prompt, "completion": done.completion} if done else None)
    return out


def rename_identifiers(
    prompt: str,
    completion: str,
    *,
    entry_point: str | None = None,
    rng: random.Random | None = None,
    avoid: Collection[str] = (),
) -> Renamed | None:
    """Consistently rename some arguments and local variables of the entry function.

    The function (``entry_point``, else the last top-level ``def`` of the prompt) keeps
    its name. A name is left alone when it is a builtin or keyword, used outside the
    function (a global, a helper), in ``avoid`` (the test's names), declared ``global``
    or ``nonlocal``, bound by an import, ``except … as``, a ``match`` pattern or a
    class body, used as a keyword-argument name anywhere, or written in any string or
    comment (a docstring that says "numbers" keeps its argument ``numbers``). Renaming
    works on tokens at the positions of the AST's name nodes, so attributes, keyword
    names in calls and text in strings never change.

    Returns:
        The renamed prompt and completion (both still parse), or None when nothing could
        be renamed.
    """
    rng = rng or random.Random(0)
    code = prompt + completion
    try:
        tree = ast.parse(code)
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (SyntaxError, tokenize.TokenError, IndentationError, ValueError):
        return None
    fn = _entry_function(tree, entry_point, prompt.count("\n") + 1)
    if fn is None:
        return None
    inside = {id(node) for node in ast.walk(fn)}
    blocked = set(_KEEP) | set(avoid) | {fn.name}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in inside:
            blocked.add(node.id)  # a module name the function may read
        elif isinstance(node, ast.keyword) and node.arg:
            blocked.add(node.arg)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            blocked.update(node.names)
        elif isinstance(node, ast.alias):
            blocked.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            blocked.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            blocked.add(node.rest)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            blocked.add(node.name)
            if isinstance(node, ast.ClassDef):
                blocked.update(_class_body_names(node))
    for tok in tokens:
        if tok.type in (token.STRING, token.COMMENT):
            blocked.update(re.findall(r"\w+", tok.string))

    # Where each candidate name occurs in the function: (line, byte column).
    places: dict[str, list[tuple[int, int]]] = defaultdict(list)
    bound: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.arg):
            bound.add(node.arg)
            places[node.arg].append((node.lineno, node.col_offset))
        elif isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                bound.add(node.id)
            places[node.id].append((node.lineno, node.col_offset))
    candidates = sorted(n for n in bound - blocked if not n.startswith("__"))
    if not candidates:
        return None

    lines = code.split("\n")
    name_at = {
        (tok.start[0], _byte_col(lines[tok.start[0] - 1], tok.start[1])): tok
        for tok in tokens
        if tok.type == token.NAME
    }
    # A name whose every occurrence is a NAME token (an f-string hides them on 3.11).
    candidates = [
        n for n in candidates if all(p in name_at and name_at[p].string == n for p in places[n])
    ]
    if not candidates:
        return None
    chosen = rng.sample(candidates, rng.randint(1, len(candidates)))
    taken = blocked | {t.string for t in tokens if t.type == token.NAME}
    fresh = (
        name
        for n in range(1_000_000)
        for name in rng.sample(_NAME_POOL, len(_NAME_POOL))
        for name in [name if n == 0 else f"{name}{n}"]
        if name not in taken
    )
    mapping = {old: next(fresh) for old in sorted(chosen)}

    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    edits = sorted(
        (starts[tok.start[0] - 1] + tok.start[1], len(tok.string), mapping[old])
        for old in chosen
        for place in places[old]
        for tok in [name_at[place]]
    )
    boundary = len(prompt)
    out = code
    for offset, size, new in reversed(edits):
        if offset < boundary < offset + size:
            return None  # the prompt ends inside a name
        if offset + size <= boundary:
            boundary += len(new) - size
        out = out[:offset] + new + out[offset + size :]
    new_prompt, new_completion = out[:boundary], out[boundary:]
    try:
        ast.parse(new_prompt + new_completion)
    except SyntaxError:
        return None
    return Renamed(new_prompt, new_completion, mapping)


def _entry_function(
    tree: ast.Module, entry_point: str | None, prompt_lines: int
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    defs = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.name == entry_point if entry_point else node.lineno <= prompt_lines)
    ]
    return defs[-1] if defs else None


def _class_body_names(node: ast.ClassDef) -> set[str]:
    """Names bound directly in a class body: they are attributes, read as ``self.x``."""
    return {
        sub.id
        for stmt in node.body
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for sub in ast.walk(stmt)
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)
    }


def _byte_col(line: str, char_col: int) -> int:
    """The AST's column (UTF-8 bytes) of a character column from tokenize."""
    return len(line[:char_col].encode("utf-8"))
