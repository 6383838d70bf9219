"""Summarization: TextRank maths, extractive picks, abstractive map-reduce with tiny models,
hybrid repair, skipping, scoring, and ROUGE of the extractive default on real DialogSum.

Tiny seq2seq models (1 layer, random weights, word-level vocabulary of the built-in
corpus) produce noise: tests assert structure, splitting and reporting, and that the
fact check catches the noise — never the quality of what they write.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from taskloop.data.records import Prediction, SummarizeExample, Where
from taskloop.evaluate.metrics import rouge
from taskloop.models.encoder import Encoder, load_encoder
from taskloop.models.generate import Generated
from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model, build_tokenizer
from taskloop.tasks import summarize
from taskloop.tasks.context import FileOptions, Resources, TaskContext
from taskloop.tasks.factcheck import check_summary
from taskloop.tasks.summarize import (
    EXTRACTIVE,
    document_units,
    extract,
    mmr_pick,
    pagerank,
    position_teleport,
    repair,
    run,
    score,
)
from taskloop.tasks.text import words

BRIDGE = (
    "The weather was pleasant on Monday morning. "
    "The city closed the old river bridge for urgent repairs. "
    "Engineers found deep cracks in the steel beams of the river bridge. "
    "My cousin likes to bake bread at the weekend. "
    "Repairs to the bridge will take six months, the city said. "
    "Drivers must use the northern bridge while the river bridge is closed."
)
LIBRARY = (
    "The town library will close for renovation from March to September. "
    "Builders will replace the leaking roof and install new heating. "
    "During the works, books can be borrowed from a temporary branch in the school hall. "
    "The renovation costs 2.4 million pounds, paid by the county. "
    "Librarians expect visitor numbers to rise once the building reopens. "
    "A reading festival is planned for the reopening in October. "
    "Local authors have offered to give free talks during the festival. "
    "The library first opened in 1908 and was last renovated in 1975."
)
DIALOGUE = (
    "#Person1#: Hello, I'd like to book a table for four people on Friday evening.\n"
    "#Person2#: Certainly. What time would you like? We have tables at seven and at nine.\n"
    "#Person1#: Seven, please. And could we sit by the window?\n"
    "#Person2#: Of course. May I have your name?\n"
    "#Person1#: It's Anderson.\n"
    "#Person2#: Thank you, Mr. Anderson. Your table for four at seven on Friday is booked."
)


def example(i: int, document: str, summaries: list[str] | None = None) -> SummarizeExample:
    return SummarizeExample(
        id=f"s{i}",
        where=Where(file="data/summarize.jsonl", row=i + 1),
        document=document,
        summaries=summaries or [],
    )


def ctx(**options: object) -> TaskContext:
    return TaskContext(
        file="data/summarize.jsonl",
        options=FileOptions(task="summarize", **options),
        resources=Resources(device="cpu"),
    )


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny T5 models: window 32 (forces splitting) and window 512 (the "long" model)."""
    root = tmp_path_factory.mktemp("tiny-sum")
    return {
        "w32": str(build_tiny_model(root / "w32", "seq2seq", max_length=32)),
        "w512": str(build_tiny_model(root / "w512", "seq2seq", max_length=512, seed=1)),
    }


# --- TextRank maths ---------------------------------------------------------------------------


def test_pagerank_star_graph_by_hand() -> None:
    """Star: node 0 linked to 1 and 2 (weight 1), d = 0.85, uniform teleport.

    Rows normalised: P0 = [0, .5, .5], P1 = P2 = [1, 0, 0]. Stationary:
    r1 = r2 = 0.05 + 0.85 * 0.5 * r0, r0 = 0.05 + 0.85 * (r1 + r2), r0 + 2 r1 = 1
    => r0 + 2 (0.05 + 0.425 r0) = 1 => 1.85 r0 = 0.9 => r0 = 0.486486,
    r1 = r2 = 0.05 + 0.425 * 0.486486 = 0.256757.
    """
    w = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=float)
    np.testing.assert_allclose(pagerank(w), [0.486486, 0.256757, 0.256757], atol=1e-6)


def test_pagerank_weighted_by_hand() -> None:
    """Weights w01 = 2, w02 = w12 = 1: row sums 3, 3, 2, so P0 = [0, 2/3, 1/3],
    P1 = [2/3, 0, 1/3], P2 = [1/2, 1/2, 0]. By symmetry r0 = r1 = a, r2 = b, 2a + b = 1:
    b = 0.05 + 0.85 * (a/3 + a/3) = 0.05 + 0.85 * (1 - b)/3
    => b (1 + 0.85/3) = 0.05 + 0.85/3 => b = 0.333333/1.283333 = 0.259740,
    a = (1 - b)/2 = 0.370130. (With d = 1 it would be the weighted degrees 3:3:2.)
    A self-loop and a negative weight are ignored (clipped to 0).
    """
    w = np.array([[5, 2, 1], [2, 0, 1], [1, 1, 0]], dtype=float)
    w2 = w.copy()
    w2[0, 2] = w2[2, 0] = 1.0
    np.testing.assert_allclose(pagerank(w), [0.370130, 0.370130, 0.259740], atol=1e-6)
    neg = np.array([[0, 2, 1, -0.5], [2, 0, 1, 0], [1, 1, 0, 0], [-0.5, 0, 0, 0]], dtype=float)
    r = pagerank(neg)
    assert r.sum() == pytest.approx(1.0)
    # Node 3 has no positive edge: it jumps uniformly and receives only teleport mass
    # plus its own uniform jump share: r3 = 0.15/4 + 0.85 * r3/4 => r3 = 0.0375/0.7875.
    assert r[3] == pytest.approx(0.0375 / 0.7875, abs=1e-6)


def test_pagerank_teleport_by_hand() -> None:
    """Two nodes linked, teleport t = (0.75, 0.25): r0 = 0.15*0.75 + 0.85*r1 and r1 = 1 - r0
    => 1.85 r0 = 0.1125 + 0.85 = 0.9625 => r0 = 0.520270, r1 = 0.479730."""
    w = np.array([[0, 1], [1, 0]], dtype=float)
    np.testing.assert_allclose(
        pagerank(w, teleport=np.array([3.0, 1.0])), [0.520270, 0.479730], atol=1e-6
    )
    np.testing.assert_allclose(position_teleport(3, 0.5), [1, 1 / np.sqrt(2), 1 / np.sqrt(3)])


def test_mmr_pick_by_hand() -> None:
    """Scores 1.0, 0.9, 0.5; sentences 0 and 1 identical, 2 orthogonal; lambda 0.7.
    Step 1 takes 0. Step 2: candidate 1 = 0.7*0.9 - 0.3*1 = 0.33, candidate 2 = 0.7*0.5
    - 0.3*0 = 0.35, so 2 wins over the near-duplicate. With lambda 1 (no redundancy
    penalty) 1 wins."""
    scores = np.array([1.0, 0.9, 0.5])
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    lengths = [5, 5, 5]
    assert mmr_pick(scores, vectors, lengths=lengths, max_sentences=2) == [0, 2]
    assert mmr_pick(scores, vectors, lengths=lengths, max_sentences=2, lam=1.0) == [0, 1]
    # A word budget of 6 stops after the second sentence (5 + 5 >= 6).
    assert mmr_pick(scores, vectors, lengths=lengths, budget_words=6) == [0, 2]
    # Ineligible sentences are passed over while eligible ones remain.
    picked = mmr_pick(
        scores, vectors, lengths=lengths, max_sentences=1, eligible=[False, True, True]
    )
    assert picked == [1]


# --- extractive -------------------------------------------------------------------------------


def test_textrank_picks_the_central_sentences(encoder: Encoder) -> None:
    """Four sentences about the bridge and two unrelated ones (one of them first, where
    the position prior helps it): the two picked are about the bridge, in document order."""
    ext = extract(BRIDGE, encoder, max_sentences=2)
    texts = [ext.units[i].text for i in ext.picked]
    assert len(texts) == 2 and all("bridge" in t.lower() for t in texts)
    assert ext.picked == sorted(ext.picked)
    assert ext.text == " ".join(texts)
    ranked = ext.ranked()
    # The off-topic sentences rank last.
    assert set(ranked[-2:]) == {0, 3}
    assert ext.budget == "2 sentences"


def test_word_budget_relative_to_document(encoder: Encoder) -> None:
    """Without max_sentences the budget is 20% of the document's words, within [15, 60]."""
    n_words = sum(len(words(u.body)) for u in document_units(LIBRARY))
    assert n_words == 90
    ext = extract(LIBRARY, encoder)
    assert ext.budget == "18 words"  # round(0.2 * 90)
    picked = sum(len(words(ext.units[i].body)) for i in ext.picked)
    assert picked >= 18 and len(ext.picked) < len(ext.units)
    short = extract("The bridge is closed. It opens in May. Cars use the ring road.", encoder)
    assert short.budget == "15 words"  # the floor


def test_dialogue_units_keep_their_speaker(encoder: Encoder) -> None:
    units = document_units(DIALOGUE)
    assert units[0].speaker == "#Person1#"
    assert units[0].body.startswith("Hello")
    assert units[0].text == "#Person1#: " + units[0].body
    # A turn of two sentences gives two units, both with the speaker.
    second_turn = [u for u in units if u.body.startswith(("Certainly", "What time"))]
    assert [u.speaker for u in second_turn] == ["#Person2#", "#Person2#"]
    assert second_turn[1].text == "#Person2#: What time would you like?"
    ext = extract(DIALOGUE, encoder, max_sentences=2)
    assert all(line.startswith("#Person") for line in ext.text.split("\n"))
    # Prose is not taken for a dialogue because a sentence contains a colon.
    assert document_units("Note: the bridge is closed. It opens in May.")[0].speaker is None


def test_run_extractive_default(encoder: Encoder) -> None:
    examples = [
        example(0, BRIDGE, ["The river bridge is closed for repairs."]),
        example(1, LIBRARY),
    ]
    preds = run(examples, ctx())
    assert [p.id for p in preds] == ["s0", "s1"]
    for p, ex in zip(preds, examples, strict=True):
        assert p.status == "ok" and p.mode == EXTRACTIVE
        assert p.model == "sentence-transformers/all-MiniLM-L6-v2"
        assert [c.name for c in p.checks] == [
            "numbers_supported",
            "names_supported",
            "content_supported",
            "length",
        ]
        assert all(c.passed for c in p.checks)
        picked = [row["sentence"] for row in p.details["extractive"]["picked"]]
        assert picked and all(s in ex.document for s in picked)
        assert p.output == " ".join(picked)
        assert p.scores["factcheck"] == 1.0
        json.dumps(p.model_dump())  # details are plain data
    assert "rouge1" in preds[0].scores and "rouge1" not in preds[1].scores
    assert (
        len(run([example(0, BRIDGE)], ctx(max_sentences=1))[0].details["extractive"]["picked"]) == 1
    )


def test_length_check() -> None:
    doc = "One two three four five six seven eight nine ten."
    assert summarize.length_check("One two three.", doc).passed
    assert not summarize.length_check("", doc).passed
    too_long = summarize.length_check(doc + " And more words here.", doc)
    assert not too_long.passed and "14 words for a source of 10" in too_long.detail
    assert summarize.length_check(doc, doc).passed  # a one-sentence source is its own summary


# --- abstractive with tiny models -------------------------------------------------------------


def test_prefix_for_t5_family_only(tiny: dict[str, str]) -> None:
    lm = load_model(tiny["w32"])
    assert lm.model.config.model_type == "t5"
    assert summarize.summary_prefix(lm) == "summarize: "
    bart = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(model_type="bart")))
    assert summarize.summary_prefix(bart) == ""  # type: ignore[arg-type]
    # Window 32 minus the prefix ("summarize" and ":" are 2 tokens here) leaves 30.
    assert summarize.input_budget(lm, "summarize: ") == 30
    assert summarize.input_budget(lm, "summarize: ", max_input_tokens=20) == 18


def test_long_document_is_split_and_reduced(tiny: dict[str, str]) -> None:
    """A document of ~170 tokens through a window of 32: split into sentence chunks,
    each summarised, the joined summaries (longer than max_new_tokens) summarised again;
    every step is in ``truncation``."""
    preds = run([example(0, LIBRARY)], ctx(model=tiny["w32"], mode="abstractive", max_new_tokens=4))
    p = preds[0]
    assert p.mode == "abstractive" and p.model and p.model.startswith(tiny["w32"])
    assert p.output is not None
    first = p.truncation[0]
    assert "exceeds the budget of 30" in first and "sentence-aligned chunks" in first
    n_chunks = p.details["chunks"]
    assert n_chunks >= 5 and f"split into {n_chunks}" in first
    assert any("summarised again" in note for note in p.truncation)
    assert p.details["rounds"] >= 2
    # The noise is caught: abstractive mode reports it, it does not repair it.
    assert p.status == "flagged"
    assert not next(c for c in p.checks if c.name == "content_supported").passed


def test_long_input_truncate_is_reported(tiny: dict[str, str]) -> None:
    p = run(
        [example(0, LIBRARY)],
        ctx(model=tiny["w32"], mode="abstractive", max_new_tokens=4, long_input="truncate"),
    )[0]
    assert p.details["chunks"] == 1
    assert any("cut to the first 30 tokens (long_input=truncate)" in n for n in p.truncation)


def test_long_model_takes_documents_over_the_window(tiny: dict[str, str]) -> None:
    p, short = run(
        [example(0, LIBRARY), example(1, "The library opens at nine. It closes at five.")],
        ctx(model=tiny["w32"], long_model=tiny["w512"], mode="abstractive", max_new_tokens=4),
    )
    assert p.model and p.model.startswith(tiny["w512"])
    assert p.details["chunks"] == 1
    assert any("summarised with the long model" in n for n in p.truncation)
    assert short.model and short.model.startswith(tiny["w32"]) and short.truncation == []


# --- hybrid -----------------------------------------------------------------------------------


def test_hybrid_noise_falls_back_to_extractive(tiny: dict[str, str], encoder: Encoder) -> None:
    """hybrid is the default once a model is set; the tiny model's noise is unsupported,
    so the extractive summary is returned and the details keep the noise and why."""
    preds = run([example(0, LIBRARY), example(1, BRIDGE)], ctx(model=tiny["w32"], max_new_tokens=8))
    for p, doc in zip(preds, (LIBRARY, BRIDGE), strict=True):
        assert p.mode == "hybrid: fell back to extractive"
        assert p.output == extract(doc, encoder).text
        assert p.status == "ok" and all(c.passed for c in p.checks)
        assert p.details["abstractive"] and p.details["abstractive"] != p.output
        assert p.details["replaced"] and all(r["why"] for r in p.details["replaced"])
        assert not any(row["supported"] for row in p.details["abstractive_factcheck"])


def test_repair_replaces_unsupported_sentences(encoder: Encoder) -> None:
    """Three sentences: one right, one with a wrong year, one invented. The two bad ones
    are replaced by the source sentences closest in meaning."""
    summary = (
        "The town library closes for renovation from March to September. "
        "The library first opened in 1921. "
        "The mayor, Gordon Blake, will sell the building to a hotel chain."
    )
    fc = check_summary(summary, LIBRARY, encoder)
    assert [s.supported for s in fc.sentences] == [True, False, False]
    ext = extract(LIBRARY, encoder)
    fixed = repair(fc, ext, encoder)
    assert fixed.mode == "hybrid: repaired (2 of 3 sentences replaced)"
    assert fixed.text.startswith("The town library closes for renovation")
    assert "1908" in fixed.replaced[0]["replacement"]  # the year's own sentence
    assert "numbers not in the source: 1921" in fixed.replaced[0]["why"]
    assert any("Gordon Blake" in why for why in fixed.replaced[1]["why"])
    assert check_summary(fixed.text, LIBRARY, encoder).supported
    kept = repair(
        check_summary("The library closes from March to September.", LIBRARY, encoder), ext, encoder
    )
    assert kept.mode == "hybrid: abstractive kept" and kept.replaced == []


def test_hybrid_mode_line_end_to_end(tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's output is replaced by fixed summaries (one good, one half good) to see
    each mode line come out of ``run``."""
    outputs = {
        "good": "The library closes for renovation from March to September.",
        "half": "The library closes for renovation. It was built by Queen Victoria in 1850.",
    }

    def fake_generate(lm, inputs, settings, cache=None):  # type: ignore[no-untyped-def]
        return [
            Generated([outputs["good" if "roof" in t else "half"]], 10, False, False)
            for t in inputs
        ]

    monkeypatch.setattr(summarize, "generate", fake_generate)
    doc_a = "The library closes for renovation from March to September. Builders will fix the roof."
    doc_b = "The library closes for renovation in spring. Builders will add new heating."
    a, b = run([example(0, doc_a), example(1, doc_b)], ctx(model=tiny["w512"]))
    assert a.mode == "hybrid: abstractive kept" and a.output == outputs["good"]
    assert b.mode == "hybrid: repaired (1 of 2 sentences replaced)"
    assert b.details["abstractive"] == outputs["half"]
    assert b.details["replaced"][0]["sentence"].startswith("It was built")
    assert "Victoria" not in (b.output or "")
    # The replacement is not the source sentence the kept first sentence already says.
    assert b.output == "The library closes for renovation. Builders will add new heating."


# --- models that are not there ----------------------------------------------------------------


def test_model_not_found_is_skipped_with_hint(tmp_path: Path) -> None:
    preds = run([example(0, BRIDGE), example(1, LIBRARY)], ctx(model=str(tmp_path / "nope")))
    assert [p.status for p in preds] == ["skipped", "skipped"]
    assert all("does not exist" in p.reason and "save_pretrained" in p.reason for p in preds)
    hub = run([example(0, BRIDGE)], ctx(model="nobody/not-cached-model"))[0]
    assert hub.status == "skipped" and "huggingface-cli download" in hub.reason


def test_causal_model_is_skipped_with_hint(tmp_path: Path) -> None:
    gpt = build_tiny_model(tmp_path / "gpt", "causal")
    p = run([example(0, BRIDGE)], ctx(model=str(gpt)))[0]
    assert p.status == "skipped" and "cannot be loaded as seq2seq" in p.reason
    assert "pick a model of the right kind" in p.reason


def test_abstractive_without_model_is_skipped() -> None:
    p = run([example(0, BRIDGE)], ctx(mode="abstractive"))[0]
    assert p.status == "skipped" and "needs a summarisation model" in p.reason


def test_entailment_model(tmp_path: Path, encoder: Encoder) -> None:
    """With an NLI model the entailment check is added; a missing one skips with a hint."""
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path / "nli"
    tok = build_tokenizer([BRIDGE], append_eos=False, max_length=64)
    labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    config = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    p = run([example(0, BRIDGE)], ctx(entailment_model=str(path), max_sentences=2))[0]
    assert [c.name for c in p.checks][-2:] == ["entailment", "length"]
    assert all(0 <= row["entailment"] <= 1 for row in p.details["factcheck"])
    missing = run([example(0, BRIDGE)], ctx(entailment_model=str(tmp_path / "none")))[0]
    assert missing.status == "skipped" and "does not exist" in missing.reason


# --- scoring ----------------------------------------------------------------------------------


def test_score_by_hand() -> None:
    """Two summarised items and one skipped (left out). Item 1 equals its second
    reference: ROUGE 1.0 (best of references). Item 2 shares no word with its reference:
    0. Mean ROUGE-1 = 0.5. Length ratios: 3/6 and 2/8, mean 0.375. Fact checks: item 1
    passes all, item 2 fails one: share 0.5."""
    from taskloop.data.records import Check, Status

    docs = ["a b c d e f", "g h i j k l m n", "x y"]
    examples = [
        example(0, docs[0], ["zzz", "cats like milk"]),
        example(1, docs[1], ["dogs bark"]),
        example(2, docs[2], ["q"]),
    ]
    passing = [Check(name=n, passed=True) for n in summarize.FACT_CHECKS[:3]]
    failing = [Check(name="numbers_supported", passed=False), *passing[1:]]

    def pred(i: int, output: str | None, status: Status, checks: list[Check]) -> Prediction:
        return Prediction(
            id=f"s{i}", task="summarize", where=examples[i].where, output=output,
            status=status, checks=checks,
        )  # fmt: skip

    preds = [
        pred(0, "cats like milk", "ok", passing),
        pred(1, "red sky", "flagged", failing),
        pred(2, None, "skipped", []),
    ]
    out = score(examples, preds)
    assert out["summarised"] == 2
    assert out["rouge1"] == pytest.approx(0.5) and out["rougeL"] == pytest.approx(0.5)
    assert out["length_ratio"] == pytest.approx(0.375)
    assert out["factcheck_pass"] == pytest.approx(0.5)
    assert score(examples[2:], preds[2:]) == {"summarised": 0.0}


# --- real data --------------------------------------------------------------------------------


def test_dialogsum_extractive_rouge_floor(shared_data: Path) -> None:
    """ROUGE-1 (best of 3 references) of the extractive default on the first 30 DialogSum
    test dialogues must reach 0.30.

    Why 0.30: when written the default scored 0.345 on these dialogues (Lead-3 turns
    0.313). Broken pipelines score below: one random sentence 0.18-0.21, three random
    sentences 0.25-0.28 (5 seeds), the last three sentences 0.275. The random-three
    baseline is recomputed here and must trail by at least 0.04.
    """
    path = shared_data / "summarization" / "dialogsum_test.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(30), f, strict=False)]
    examples = [
        example(i, r["dialogue"], [r["summary1"], r["summary2"], r["summary3"]])
        for i, r in enumerate(rows)
    ]
    preds = run(examples, ctx())
    assert all(p.status == "ok" for p in preds), [p.checks for p in preds if p.status != "ok"]
    result = score(examples, preds)
    assert result["rouge1"] >= 0.30, result
    assert result["factcheck_pass"] == 1.0  # extractive summaries are supported
    assert 0.1 < result["length_ratio"] < 0.4
    rng = random.Random(0)
    shuffled = []
    for ex in examples:
        units = document_units(ex.document)
        rng.shuffle(units)
        shuffled.append("\n".join(u.text for u in units[:3]))
    random3 = rouge(shuffled, [ex.summaries for ex in examples])["rouge1"]
    assert result["rouge1"] - random3 >= 0.04, (result["rouge1"], random3)


def test_benchmark_script_runs(shared_data: Path) -> None:
    """benchmarks/summarization_quality.py on 3 dialogues: the table and its rows print."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "summarization_quality.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data-dir",
            str(shared_data / "summarization"),
            "--limit",
            "3",
            "--skip-xsum",
            "--skip-factcheck",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "| data | system | n | R-1 best |" in out
    for system in ("extractive (TextRank, MiniLM)", "Lead-3", "random-3"):
        assert f"| DialogSum test | {system} | 3 |" in out
