"""Pictures and a page for explanations: PNG heatmaps and bars, one self-contained HTML.

PNGs are drawn with matplotlib's object API on the Agg canvas (no pyplot state, safe in
threads): a target × source heatmap with token labels for generators, a bar per source
token for classifiers, the cross-attention heatmap, and the feature ranking. Long
sequences keep every value but label at most ``max_labels`` ticks per axis.

The HTML page needs nothing from outside: styles inline, PNGs embedded as base64
``<img>``. It is rendered by Jinja2 with autoescaping, so tokens, sources and outputs
(model and user text) are always escaped.
"""

from __future__ import annotations

import base64
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloop.evaluate.explain import SEQUENCE_ROW, Attribution, Explanation, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from taskloop.evaluate.attention import Aggregate, CrossAttention

DPI = 100
MAX_LABELS = 60
MAX_BARS = 60
_LABEL_CHARS = 14
HTML_FILE = "explain.html"
JSON_FILE = "explanations.json"


def token_label(token: str, limit: int = _LABEL_CHARS) -> str:
    """A token as shown on an axis: word-start markers (▁, Ġ) dropped, long ones cut."""
    text = token.replace("\u2581", " ").replace("\u0120", " ").strip() or token
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _ticks(n: int, max_labels: int) -> list[int]:
    """Tick positions: every position up to ``max_labels``, else evenly thinned."""
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


def _size(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Figure inches: room for the labels, capped so a 512-token input stays readable."""
    width = min(max(5.5, 2.5 + 0.3 * min(n_cols, MAX_LABELS)), 24.0)
    height = min(max(3.0, 1.8 + 0.3 * min(n_rows, MAX_LABELS)), 18.0)
    return width, height


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def heatmap_figure(
    matrix: Any,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    signed: bool,
    colorbar_label: str,
    max_labels: int = MAX_LABELS,
) -> Figure:
    """A rows × columns heatmap with token labels (columns rotated) and a colour bar.

    ``signed`` maps values to a diverging red/blue scale centred on 0; otherwise 0..max
    on a sequential one. The array drawn is ``matrix`` as given (rows × columns).
    """
    import numpy as np

    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2 or data.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {data.shape} does not match {len(row_labels)} row and "
            f"{len(col_labels)} column labels"
        )
    fig = _figure(_size(*data.shape))
    ax = fig.add_subplot()
    if signed:
        bound = float(np.abs(data).max()) or 1.0
        image = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0)
    cols = _ticks(data.shape[1], max_labels)
    rows = _ticks(data.shape[0], max_labels)
    ax.set_xticks(cols, [token_label(col_labels[i]) for i in cols], rotation=60, ha="right")
    ax.set_yticks(rows, [token_label(row_labels[i]) for i in rows])
    ax.set_xlabel("source tokens")
    ax.set_ylabel("target tokens")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=colorbar_label)
    return fig


def importance_figure(
    tokens: Sequence[str],
    scores: Sequence[float],
    *,
    title: str,
    signed: bool,
    max_bars: int = MAX_BARS,
) -> Figure:
    """One bar per source token (red: raises the output, blue: lowers it).

    Past ``max_bars`` tokens only the largest ``|score|`` are drawn, in source order, and
    the title says so.
    """
    import numpy as np

    values = np.asarray(scores, dtype=float)
    keep = list(range(len(values)))
    if len(keep) > max_bars:
        keep = sorted(np.argsort(-np.abs(values), kind="stable")[:max_bars].tolist())
        title = f"{title} (largest {max_bars} of {len(values)} tokens)"
    shown = values[keep]
    fig = _figure(_size(8, len(keep)))
    ax = fig.add_subplot()
    colours = ["#d62728" if v >= 0 else "#1f77b4" for v in shown] if signed else "#d62728"
    ax.bar(range(len(keep)), shown, color=colours)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(keep)), [token_label(tokens[i]) for i in keep], rotation=60, ha="right")
    ax.set_ylabel("attribution")
    ax.set_title(title)
    return fig


def _method_title(attr: Attribution) -> str:
    name = {"ig": "Integrated Gradients", "saliency": "Saliency (|gradient|)"}.get(
        attr.method, "Input × gradient"
    )
    delta = f", max |delta| {attr.max_abs_delta:.2g}" if attr.deltas else ""
    return f"{name}{delta}"


def attribution_figure(attr: Attribution, *, max_labels: int = MAX_LABELS) -> Figure:
    """Generators: a target-token × source-token heatmap; classifiers: one bar per token."""
    signed = attr.method != "saliency"
    if attr.kind == "classify":
        return importance_figure(
            attr.source_tokens,
            attr.sequence,
            title=f"{_method_title(attr)}\n{attr.explained}",
            signed=signed,
            max_bars=max_labels,
        )
    rows = attr.token_rows
    labels = attr.row_labels[:-1]
    if not rows:  # sequence row only (per_token=False): draw that one row
        rows, labels = [attr.sequence], [SEQUENCE_ROW]
    return heatmap_figure(
        rows,
        labels,
        attr.source_tokens,
        title=_method_title(attr),
        signed=signed,
        colorbar_label="attribution to log p(target token)",
        max_labels=max_labels,
    )


def attention_figure(
    attention: CrossAttention, which: Aggregate | None = None, *, max_labels: int = MAX_LABELS
) -> Figure:
    """The (target × source) cross-attention map ``which`` (default: the record's default)."""
    which = which or attention.default
    layers, heads = attention.weights.shape[:2]
    what = (
        f"mean of {layers} layer(s) × {heads} heads"
        if which == "all"
        else f"last layer, mean of {heads} heads"
    )
    return heatmap_figure(
        attention.aggregate(which),
        attention.target_tokens,
        attention.source_tokens,
        title=f"Cross-attention ({what})",
        signed=False,
        colorbar_label="attention weight",
        max_labels=max_labels,
    )


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG of exactly its size × :data:`DPI` pixels."""
    path = Path(path)
    with warnings.catch_warnings():
        # tokens in scripts the bundled font lacks are drawn as boxes, not errors
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.savefig(path, dpi=DPI, format="png")
    return path


# --- HTML -----------------------------------------------------------------------------------


@dataclass
class _Token:
    text: str
    style: str
    title: str
    special: bool


def _shade(score: float, bound: float, signed: bool) -> str:
    """Background colour: red for positive, blue for negative, opacity by |score|."""
    alpha = 0.0 if bound <= 0 else min(abs(score) / bound, 1.0) * 0.85
    rgb = "214,39,40" if score >= 0 or not signed else "31,119,180"
    return f"background-color: rgba({rgb},{alpha:.3f})"


def shaded_tokens(tokens: Sequence[str], scores: Sequence[float], signed: bool) -> list[_Token]:
    """Tokens with an inline style shading each by its score, relative to the row's max."""
    bound = max((abs(s) for s in scores), default=0.0)
    return [
        _Token(token_label(t, 40), _shade(s, bound, signed), f"{s:+.4g}", False)
        for t, s in zip(tokens, scores, strict=True)
    ]


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 80rem; }
section.example { border-top: 1px solid #ccc; padding-top: 1rem; margin-top: 1.5rem; }
.tokens { line-height: 2.1; font-family: ui-monospace, monospace; }
.tok { padding: 0.1rem 0.2rem; margin: 0 1px; border-radius: 3px; }
.special { color: #888; font-style: italic; }
.meta, .note { color: #555; font-size: 0.9rem; }
.legend span { padding: 0.1rem 0.4rem; border-radius: 3px; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
table { border-collapse: collapse; } td, th { padding: 0.2rem 0.6rem; text-align: left; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="legend">Source tokens are shaded by their attribution to the whole output:
<span style="background-color: rgba(214,39,40,0.6)">raises it</span>
<span style="background-color: rgba(31,119,180,0.6)">lowers it</span>
(saliency is unsigned: red only). Hover a token for its value.</p>
<p class="meta">{{ examples | length }} example(s).</p>
{% for e in examples %}
<section class="example" id="example-{{ loop.index }}">
<h2>{{ e.id }}</h2>
<p class="meta">model {{ e.model }};
{% if e.kind == "classify" %}explained class: {{ e.target }}{% else %}
output {{ "generated greedily" if e.generated else "given" }}{% endif %}</p>
<p><b>Source</b>: {{ e.source }}</p>
{% if e.kind != "classify" %}<p><b>Output</b>: {{ e.target }}</p>{% endif %}
{% if e.reference %}<p><b>Reference</b>: {{ e.reference }}</p>{% endif %}
{% for note in e.notes %}<p class="note">note: {{ note }}</p>{% endfor %}
{% for a in e.attributions %}
<h3>{{ a.title }}</h3>
<p class="meta">explained: {{ a.explained }}. {{ a.whole }}: {{ a.output }}
{% if a.baseline_output is not none %}
(at the {{ a.baseline }} baseline {{ a.baseline_output }});
IG convergence delta {{ a.delta }} with {{ a.n_steps }} steps
{% endif %}
</p>
<div class="tokens">
{% for t in a.tokens %}
<span class="tok{{ ' special' if t.special }}" style="{{ t.style }}"
 title="{{ t.title }}">{{ t.text }}</span>
{% endfor %}
</div>
{% if a.targets %}
<p class="meta">target tokens (log-probability):
{% for t in a.targets %}
<span class="tok" title="{{ t.title }}">{{ t.text }}</span>
{% endfor %}
</p>
{% endif %}
{% if a.image %}
<img alt="attributions of {{ e.id }} ({{ a.method }})" src="{{ a.image }}">
{% endif %}
{% endfor %}
{% if e.attention_image %}<h3>Cross-attention</h3>
<img alt="cross-attention of {{ e.id }}" src="{{ e.attention_image }}">{% endif %}
</section>
{% endfor %}
</body></html>
"""


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _attribution_view(attr: Attribution, image: str | None) -> dict[str, Any]:
    signed = attr.method != "saliency"
    tokens = shaded_tokens(attr.source_tokens, attr.sequence, signed)
    for token, special in zip(tokens, attr.source_special, strict=True):
        token.special = special
    targets = (
        [
            _Token(token_label(t, 40), "", f"log p = {lp:.4g}", False)
            for t, lp in zip(attr.target_tokens, attr.outputs, strict=False)
        ]
        if attr.kind != "classify" and len(attr.outputs) > 1
        else []
    )
    return {
        "title": _method_title(attr),
        "method": attr.method,
        "explained": attr.explained,
        "whole": "Value" if attr.kind == "classify" else "Whole-output log-probability",
        "output": _fmt(attr.outputs[-1]),
        "baseline": attr.baseline,
        "baseline_output": _fmt(attr.baseline_outputs[-1]) if attr.baseline_outputs else None,
        "delta": _fmt(attr.deltas[-1]) if attr.deltas else None,
        "n_steps": attr.n_steps,
        "tokens": tokens,
        "targets": targets,
        "image": png_data_uri(image) if image else None,
    }


def render_html(explanations: Sequence[Explanation], *, title: str = "taskloop explain") -> str:
    """The page: per example the shaded source, the output, values and the PNGs (embedded)."""
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    examples = []
    for e in explanations:
        views = [_attribution_view(a, e.images.get(_image_key(a.method))) for a in e.attributions]
        examples.append(
            {
                "id": e.id,
                "model": e.model,
                "kind": e.kind,
                "source": e.source,
                "target": e.target,
                "reference": e.reference,
                "generated": e.generated,
                "notes": e.notes,
                "attributions": views,
                "attention_image": (
                    png_data_uri(e.images["attention"]) if "attention" in e.images else None
                ),
            }
        )
    return env.from_string(_PAGE).render(title=title, examples=examples)


def _image_key(method: str) -> str:
    return f"attributions-{method}"


def file_stem(example_id: str, taken: set[str]) -> str:
    """A file-name-safe, unique stem for an example id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", example_id).strip("._") or "example"
    stem = stem[:80]
    unique, n = stem, 2
    while unique in taken:
        unique, n = f"{stem}-{n}", n + 1
    taken.add(unique)
    return unique


def write_explanations(
    explanations: Sequence[Explanation],
    out_dir: str | Path,
    *,
    attention: Aggregate | None = None,
    title: str = "taskloop explain",
) -> list[tuple[Path, str]]:
    """Write every PNG, ``explanations.json`` and ``explain.html`` into ``out_dir``.

    Per example ``<id>-attributions.png`` (the first gradient method; further methods as
    ``<id>-attributions-<method>.png``) and ``<id>-cross-attention.png`` for seq2seq models
    with attention. Each explanation's ``images`` is filled in.

    Returns:
        ``(path, what)`` for every file written, in order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, str]] = []
    taken: set[str] = set()
    for e in explanations:
        stem = file_stem(e.id, taken)
        for i, attr in enumerate(e.attributions):
            name = (
                f"{stem}-attributions.png" if i == 0 else f"{stem}-attributions-{attr.method}.png"
            )
            path = save_png(attribution_figure(attr), out / name)
            e.images[_image_key(attr.method)] = str(path)
            written.append((path, f"{e.id}: {attr.method} attributions"))
        if e.attention is not None:
            path = save_png(
                attention_figure(e.attention, attention), out / f"{stem}-cross-attention.png"
            )
            e.images["attention"] = str(path)
            written.append((path, f"{e.id}: cross-attention"))
    json_path = write_json(explanations, out / JSON_FILE)
    written.append((json_path, "every explanation (tokens, scores, values)"))
    html_path = out / HTML_FILE
    html_path.write_text(render_html(explanations, title=title), encoding="utf-8")
    written.append((html_path, "page with shaded tokens and every picture"))
    return written
