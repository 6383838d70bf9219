"""``feature_selection``: which input words matter to a model, over a whole data set.

Per example, the attribution row of the whole output (a generator's sequence
log-probability, a classifier's class logit) is summed per word (sub-word pieces merged,
special tokens left out), as absolute values for importance and signed for direction.
Each example is then normalised by the mean absolute importance of its words, so that an
average word of any example weighs 1.0 and a long input does not outweigh a short one.
A word's importance is the mean of its normalised values over its occurrences; words
seen fewer than ``min_count`` times are left out of the ranking.

The ranking is reported (JSON, CSV, bar plot) and used: :func:`filter_inputs` drops each
text's least important words (prompt compression, noise removal), and
:func:`feature_weights` gives word → weight maps for sample or token weighting. A word the
ranking does not know counts as an average word (1.0).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloop import progress
from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain import WORD, Attribution, BaselineKind, Method

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from taskloop.models.loader import LoadedModel

UNKNOWN_WEIGHT = 1.0  # a word the ranking never saw counts as an average word


@dataclass
class Feature:
    """One word's importance over the data set (1.0 = an average word of its example)."""

    word: str
    importance: float  # mean normalised |attribution|
    signed: float  # mean normalised signed attribution: > 0 raises the output
    count: int  # occurrences
    examples: int  # examples it occurs in


@dataclass
class FeatureRanking:
    """Words ranked by importance (most important first), with what produced them."""

    method: str
    model: str
    n_examples: int
    features: list[Feature]
    top_k: int = 50
    min_count: int = 2
    lowercase: bool = True
    skipped: int = 0  # examples whose attributions were all zero
    notes: list[str] = field(default_factory=list)

    @property
    def top(self) -> list[Feature]:
        return self.features[: self.top_k]

    def weight(self, word: str) -> float:
        """The importance of ``word``; :data:`UNKNOWN_WEIGHT` when not ranked."""
        key = word.lower() if self.lowercase else word
        return self._index().get(key, UNKNOWN_WEIGHT)

    def _index(self) -> dict[str, float]:
        return {f.word: f.importance for f in self.features}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.model,
            "n_examples": self.n_examples,
            "top_k": self.top_k,
            "min_count": self.min_count,
            "lowercase": self.lowercase,
            "skipped": self.skipped,
            "normalisation": "per example, by the mean |attribution| of its words",
            "notes": list(self.notes),
            "features": [asdict(f) for f in self.features],
        }


def word_scores(attr: Attribution) -> list[tuple[str, float, float]]:
    """``(word, |attribution|, signed attribution)`` per word occurrence of one example.

    A word's value is the sum over its sub-word tokens of the output row (the sequence
    row for generators, the class row for classifiers); special tokens are left out.
    """
    row = attr.sequence
    absolute = [0.0] * len(attr.words)
    signed = [0.0] * len(attr.words)
    for score, word in zip(row, attr.word_index, strict=True):
        if word is None:
            continue
        absolute[word] += abs(score)
        signed[word] += score
    return list(zip(attr.words, absolute, signed, strict=True))


def feature_ranking(
    attributions: Iterable[Attribution],
    *,
    top_k: int = 50,
    min_count: int = 2,
    lowercase: bool = True,
    model: str = "",
) -> FeatureRanking:
    """Rank words by mean per-example-normalised importance (see the module docstring).

    Raises:
        ExplainError: no attributions, or ``top_k``/``min_count`` below 1.
    """
    if top_k < 1 or min_count < 1:
        raise ExplainError(
            f"top_k ({top_k}) and min_count ({min_count}) must be at least 1",
            hint="use --top-k 50 --min-count 2",
        )
    totals: dict[str, list[float]] = {}  # word → [sum |norm|, sum signed norm, count]
    seen_in: dict[str, int] = {}
    methods: set[str] = set()
    n = skipped = 0
    for attr in attributions:
        n += 1
        methods.add(attr.method)
        words = word_scores(attr)
        mean = sum(a for _, a, _ in words) / len(words) if words else 0.0
        if mean <= 0.0 or not math.isfinite(mean):
            skipped += 1
            continue
        keys_here: set[str] = set()
        for word, absolute, signed in words:
            key = word.lower() if lowercase else word
            acc = totals.setdefault(key, [0.0, 0.0, 0])
            acc[0] += absolute / mean
            acc[1] += signed / mean
            acc[2] += 1
            keys_here.add(key)
        for key in keys_here:
            seen_in[key] = seen_in.get(key, 0) + 1
    if n == 0:
        raise ExplainError("no examples to rank features on", hint="pass at least one text")
    features = [
        Feature(key, acc[0] / acc[2], acc[1] / acc[2], int(acc[2]), seen_in[key])
        for key, acc in totals.items()
        if acc[2] >= min_count
    ]
    features.sort(key=lambda f: (-f.importance, -f.count, f.word))
    notes = []
    if skipped:
        notes.append(f"{skipped} example(s) with all-zero attributions were left out")
    if len(totals) > len(features):
        notes.append(f"{len(totals) - len(features)} word(s) seen fewer than {min_count} times")
    return FeatureRanking(
        method="+".join(sorted(methods)),
        model=model,
        n_examples=n,
        features=features,
        top_k=top_k,
        min_count=min_count,
        lowercase=lowercase,
        skipped=skipped,
        notes=notes,
    )


def feature_selection(
    model: LoadedModel | str,
    texts: Sequence[str],
    *,
    method: Method = "ig",
    top_k: int = 50,
    min_count: int = 2,
    targets: Sequence[str | None] | None = None,
    label: int | str | None = None,
    n_steps: int = 50,
    baseline: BaselineKind = "pad",
    internal_batch_size: int = 128,
    lowercase: bool = True,
    max_new_tokens: int | None = None,
) -> FeatureRanking:
    """Rank the input words of ``texts`` by their importance to ``model``'s output.

    Generators are explained on the log-probability of their whole output (``targets``,
    or generated greedily); classifiers and reward models on the ``label`` logit
    (default: each text's predicted class).

    Args:
        model: a loaded model, or a name/folder for :func:`load_explainable`.
        texts: model inputs, as the model sees them (task prompts included).
        method: "ig", "saliency" or "input_x_gradient".
        top_k: how many features the report and plot show (all are kept in the record).
        min_count: least occurrences for a word to be ranked.
        targets: one output per text to explain instead of generating (generators).

    Raises:
        ExplainError: see :func:`attribute`; targets of the wrong length.
    """
    from taskloop.evaluate.explain import attribute, load_explainable

    lm = load_explainable(model) if isinstance(model, str) else model
    if targets is not None and len(targets) != len(texts):
        raise ExplainError(
            f"{len(targets)} targets for {len(texts)} texts",
            hint="pass one target per text (None to generate it)",
        )
    attributions = []
    progress.start("feature selection", len(texts), unit="items")
    for i, text in enumerate(texts):
        attributions.append(
            attribute(
                lm,
                text,
                target=targets[i] if targets is not None else None,
                method=method,
                n_steps=n_steps,
                baseline=baseline,
                internal_batch_size=internal_batch_size,
                label=label,
                per_token=False,  # only the whole output's row is ranked
                max_new_tokens=max_new_tokens,
            )
        )
        progress.advance(1)
    return feature_ranking(
        attributions, top_k=top_k, min_count=min_count, lowercase=lowercase, model=lm.describe()
    )


def feature_weights(ranking: FeatureRanking, *, top_only: bool = False) -> dict[str, float]:
    """Word → weight (its importance; 1.0 is an average word), for sample or token weights.

    Words absent from the map should get :data:`UNKNOWN_WEIGHT`. ``top_only`` keeps the
    ``top_k`` words only.
    """
    chosen = ranking.top if top_only else ranking.features
    return {f.word: f.importance for f in chosen}


def filter_inputs(
    texts: Sequence[str],
    ranking: FeatureRanking,
    *,
    keep: float | int = 0.8,
) -> list[str]:
    """Each text with its least important words removed.

    Words are :data:`taskloop.evaluate.explain.WORD` spans (runs of word characters, or a
    punctuation mark); each gets its ranking weight (:data:`UNKNOWN_WEIGHT` if unranked).
    The kept words stay in their order, with the spacing they had.

    Args:
        keep: a share in (0, 1] of each text's words (rounded up), or a number of words.

    Raises:
        ExplainError: ``keep`` is not a positive share or count.
    """
    if isinstance(keep, bool) or not (
        (isinstance(keep, float) and 0.0 < keep <= 1.0) or (isinstance(keep, int) and keep >= 1)
    ):
        raise ExplainError(
            f"keep must be a share in (0, 1] or a word count >= 1, not {keep!r}",
            hint="use keep=0.8 (80% of each text's words) or keep=20",
        )
    weights = ranking._index()
    out = []
    for text in texts:
        spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
        if not spans:
            out.append(text)
            continue
        n_keep = math.ceil(keep * len(spans)) if isinstance(keep, float) else min(keep, len(spans))
        words = [text[s:e] for s, e in spans]
        if ranking.lowercase:
            words = [w.lower() for w in words]
        # stable: among equal weights the earlier word is kept
        order = sorted(range(len(spans)), key=lambda i: -weights.get(words[i], UNKNOWN_WEIGHT))
        kept = sorted(order[:n_keep])
        pieces: list[str] = []
        previous = -1
        for i in kept:
            if pieces:
                gap_from = spans[previous][1]
                gap = text[gap_from : spans[i][0]]
                if previous != i - 1:
                    gap = " " if any(c.isspace() for c in gap) else ""
                pieces.append(gap)
            pieces.append(text[spans[i][0] : spans[i][1]])
            previous = i
        out.append("".join(pieces))
    return out


def ranking_figure(ranking: FeatureRanking, *, top_k: int | None = None) -> Figure:
    """Horizontal bars of the top features' importance (red: raises the output)."""
    from taskloop.evaluate.explain_render import _figure, token_label

    shown = ranking.features[: top_k or ranking.top_k]
    fig = _figure((7.0, min(max(3.0, 1.2 + 0.28 * len(shown)), 20.0)))
    ax = fig.add_subplot()
    if not shown:
        ax.text(0.5, 0.5, "no word seen often enough", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = list(range(len(shown)))[::-1]
    unsigned = ranking.method == "saliency"
    colours = ["#d62728" if unsigned or f.signed >= 0 else "#1f77b4" for f in shown]
    ax.barh(y, [f.importance for f in shown], color=colours)
    ax.set_yticks(y, [f"{token_label(f.word, 20)} ({f.count})" for f in shown])
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("mean importance (1.0 = an average word of its example)")
    ax.set_title(f"Top {len(shown)} features ({ranking.method}, {ranking.n_examples} examples)")
    return fig


def write_ranking(
    ranking: FeatureRanking, out_dir: str | Path, *, stem: str = "features"
) -> list[tuple[Path, str]]:
    """Write ``<stem>.json`` (all ranked words), ``<stem>.csv`` and ``<stem>.png`` (top k).

    Returns:
        ``(path, what)`` per file written.
    """
    from taskloop.evaluate.explain_render import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    json_path.write_text(
        json.dumps(ranking.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    csv_path = out / f"{stem}.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "word", "importance", "signed", "count", "examples"])
        for rank, f in enumerate(ranking.features, start=1):
            writer.writerow(
                [rank, f.word, f"{f.importance:.6g}", f"{f.signed:.6g}", f.count, f.examples]
            )
    png_path = save_png(ranking_figure(ranking), out / f"{stem}.png")
    return [
        (json_path, f"feature ranking ({len(ranking.features)} words)"),
        (csv_path, "feature ranking as a table"),
        (png_path, f"top {min(ranking.top_k, len(ranking.features))} features"),
    ]
