"""``taskloop explain``: token attributions and cross-attention for a model's outputs.

Examples come from task files or archives (each task's prompt exactly as the model sees
it, see :mod:`taskloop.data.pairs`) or from ``--text``. Every example is explained with
the chosen methods and written to ``--out`` as PNGs, ``explanations.json`` and one
self-contained ``explain.html``; ``--features`` adds the word ranking over all examples.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.evaluate.errors import ExplainError

if TYPE_CHECKING:
    from taskloop.data.records import Example
    from taskloop.models.loader import LoadedModel

METHOD_CHOICES = ("ig", "saliency", "input_x_gradient", "attention", "all")


@dataclass(frozen=True)
class Item:
    """One example to explain: the model input, and the output to explain if fixed."""

    id: str
    source: str
    target: str | None = None
    reference: str | None = None


def methods_for(method: str, kind: str) -> list[str]:
    """The methods ``--method`` names for a model of ``kind``.

    Raises:
        ExplainError: an unknown name, or attention asked of a model without it.
    """
    if method not in METHOD_CHOICES:
        raise ExplainError(f"unknown --method {method!r}", hint="use " + ", ".join(METHOD_CHOICES))
    if method == "all":
        return ["ig", "saliency", "attention"] if kind == "seq2seq" else ["ig", "saliency"]
    if method == "attention" and kind != "seq2seq":
        raise ExplainError(
            f"--method attention needs an encoder-decoder model; this one is {kind}",
            hint="use --method ig or saliency",
        )
    return [method]


def example_item(example: Example, lm: LoadedModel) -> Item:
    """The model input of a task example (its task prompt) and its reference, if any."""
    from taskloop.data.pairs import example_to_pairs, model_input

    kind = "causal" if lm.kind == "causal" else "seq2seq"
    model_type = str(getattr(lm.model.config, "model_type", ""))
    vocab = lm.tokenizer.get_vocab() if model_type == "marian" else ()
    source = model_input(example, kind=kind, model_type=model_type, vocab=vocab)
    pairs = example_to_pairs(example, kind=kind, model_type=model_type, vocab=vocab)
    return Item(example.id, source, reference=pairs[0].target if pairs else None)


def collect_items(
    paths: list[Path],
    texts: list[str],
    targets: list[str],
    lm: LoadedModel,
    *,
    use_reference: bool,
    limit: int,
) -> list[Item]:
    """``--text`` items first, then the examples of every input, at most ``limit``.

    Raises:
        ExplainError: nothing to explain, or ``--target`` not matching ``--text``.
    """
    from taskloop.train.inputs import read_inputs

    if targets and len(targets) != len(texts):
        raise ExplainError(
            f"{len(targets)} --target for {len(texts)} --text",
            hint="give one --target per --text, in the same order (or none to generate)",
        )
    items = [
        Item(f"text-{i}", text, targets[i - 1] if targets else None)
        for i, text in enumerate(texts, start=1)
    ]
    if paths:
        inputs = read_inputs([str(p) for p in paths])
        for example in inputs.examples:
            if len(items) >= limit:
                break
            item = example_item(example, lm)
            if use_reference and item.reference and lm.kind != "classify":
                item = Item(item.id, item.source, item.reference, item.reference)
            items.append(item)
        if not inputs.examples:
            first = f"; first problem: {inputs.errors[0]}" if inputs.errors else ""
            raise ExplainError(
                f"no usable examples in {', '.join(map(str, paths))}{first}",
                hint="pass task files or archives that `taskloop run` accepts, or --text",
            )
    if not items:
        raise ExplainError("nothing to explain", hint="pass INPUT files or --text TEXT")
    return items[:limit]


def print_written(written: list[tuple[Path, str]], out: Path) -> None:
    """A short table of the files written into ``out``."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title=f"taskloop explain: written to {out}")
    table.add_column("file", overflow="fold")
    table.add_column("what", overflow="fold")
    for path, what in written:
        table.add_row(path.name, what, end_section=False)
    console.print(table, soft_wrap=False)


def explain_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="PATH_OR_NAME",
            help="A seq2seq or causal LM, or a sequence classifier / reward model: a folder, "
            "a cached hub id, or models:/NAME@ALIAS.",
        ),
    ],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="INPUT...",
            help="Task files or archives (.jsonl/.json/.csv, a folder, a .zip, a blob): each "
            "example's prompt is explained as the model sees it.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", metavar="TEXT", help="A model input to explain (repeatable)."),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="TEXT",
            help="The output to explain for the --text of the same position (repeatable); "
            "generated greedily when absent.",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            metavar="METHOD",
            help="ig (Integrated Gradients), saliency (gradient norm), input_x_gradient, "
            "attention (cross-attention, seq2seq only) or all.",
        ),
    ] = "ig",
    steps: Annotated[int, typer.Option(metavar="N", help="Integrated Gradients steps.")] = 50,
    limit: Annotated[int, typer.Option(metavar="N", help="Explain at most N examples.")] = 20,
    features: Annotated[
        bool,
        typer.Option("--features", help="Also rank input words by importance over all examples."),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the outputs.")
    ] = Path("taskloop-explain"),
    baseline: Annotated[
        str, typer.Option(metavar="KIND", help="IG baseline: pad (pad embeddings) or zeros.")
    ] = "pad",
    label: Annotated[
        str | None,
        typer.Option(
            metavar="LABEL",
            help="Classifiers: the class (name or index) to explain; default the predicted one.",
        ),
    ] = None,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference", help="Explain the data's reference output instead of generating one."
        ),
    ] = False,
    max_new_tokens: Annotated[
        int | None, typer.Option(metavar="N", help="Most tokens generated per example.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(metavar="N", help="Most interpolated inputs per IG forward pass.")
    ] = 128,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")] = "auto",
    top_k: Annotated[int, typer.Option(metavar="N", help="Features shown (--features).")] = 50,
    min_count: Annotated[
        int, typer.Option(metavar="N", help="Least occurrences of a ranked word (--features).")
    ] = 2,
) -> None:
    """Explain a model's outputs: which input tokens drove them, and where it attended.

    Writes OUT/explain.html (shaded tokens and every picture, self-contained),
    OUT/<id>-attributions.png, OUT/<id>-cross-attention.png (seq2seq, --method attention
    or all), OUT/explanations.json and, with --features, OUT/features.json/.csv/.png.
    """
    from taskloop import progress
    from taskloop.evaluate.explain import explain, load_explainable
    from taskloop.evaluate.explain_render import write_explanations
    from taskloop.evaluate.features import feature_ranking, write_ranking

    if steps < 1 or limit < 1:
        raise ExplainError("--steps and --limit must be at least 1", hint="use --steps 50")
    if baseline not in ("pad", "zeros"):
        raise ExplainError(f"unknown --baseline {baseline!r}", hint="use pad or zeros")
    lm = load_explainable(model, device=device)
    chosen = methods_for(method, lm.kind)
    if features and not any(m != "attention" for m in chosen):
        raise ExplainError(
            "--features ranks words by attributions; attention alone gives none",
            hint="use --method ig, saliency or all with --features",
        )
    items = collect_items(
        list(inputs or []),
        list(text or []),
        list(target or []),
        lm,
        use_reference=reference,
        limit=limit,
    )
    class_label: int | str | None = int(label) if label and label.isdigit() else label
    explanations = []
    progress.start("explain", len(items), unit="items")
    for item in items:
        explanations.append(
            explain(
                lm,
                item.source,
                id=item.id,
                target=item.target,
                reference=item.reference,
                methods=chosen,
                n_steps=steps,
                baseline=baseline,  # type: ignore[arg-type]
                internal_batch_size=batch_size,
                label=class_label,
                max_new_tokens=max_new_tokens,
            )
        )
        progress.advance(1)
    written = write_explanations(explanations, out, title=f"taskloop explain: {lm.name}")
    if features:
        first = next(m for m in chosen if m != "attention")
        ranking = feature_ranking(
            [a for e in explanations for a in e.attributions if a.method == first],
            top_k=top_k,
            min_count=min_count,
            model=lm.describe(),
        )
        written += write_ranking(ranking, out)
    print_written(written, out)


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to ``app``."""
    app.command("explain", epilog=EPILOG)(handle_errors(explain_command))
