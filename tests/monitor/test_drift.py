"""Drift detection: MMD and KS by hand, then drift found / not found on real and generated
texts with the packaged MiniLM encoder, the service's monitor, and ``taskloop drift``."""

from __future__ import annotations

import gzip
import json
import math
import random
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from taskloop.errors import InputFileError
from taskloop.monitor.drift import (
    DriftError,
    DriftMonitor,
    DriftReport,
    ascii_letter_share,
    bonferroni,
    detect_drift,
    ks_tests,
    load_texts,
    mmd_permutation,
    mmd_test,
    unk_token_rates,
    unknown_rates,
)
from taskloop.monitor.drift_cli import DRIFT_EXIT, register
from taskloop.monitor.metrics import make_metrics

ALPHA = 0.05

# ---------------------------------------------------------------- hand-checked math


def test_bonferroni_multiplies_by_the_number_of_tests_and_caps_at_one() -> None:
    """[0.01, 0.02, 0.5] x 3 = [0.03, 0.06, 1.5 -> 1]; with 5 tests: [0.05, 0.1, 1]."""
    assert bonferroni([0.01, 0.02, 0.5]) == pytest.approx([0.03, 0.06, 1.0])
    assert bonferroni([0.01, 0.02, 0.5], tests=5) == pytest.approx([0.05, 0.1, 1.0])


def test_mmd2_of_identical_samples_by_hand() -> None:
    """X = Y = {0, 2}. Pooled squared distances between distinct points: 4, 0, 4, 4, 0, 4,
    median 4, so sigma² = 4 and k(d² = 4) = exp(-4 / 8) = e^-½, k(0) = 1.

    xx = yy = (k(0,2) + k(2,0)) / (2·1) = e^-½;  xy = (1 + e^-½ + e^-½ + 1) / 4.
    MMD²_u = 2e^-½ - 2(1 + e^-½)/2 = e^-½ - 1 ≈ -0.393 (the unbiased estimate can go
    below 0; identical samples sit at or below it, never well above).
    """
    x = np.array([[0.0], [2.0]])
    result = mmd_permutation(x, x.copy(), permutations=20)
    assert result.bandwidth == pytest.approx(2.0)
    assert result.mmd2 == pytest.approx(math.exp(-0.5) - 1)
    assert result.p_value == 1.0  # no split is less alike than an identical one


def test_mmd2_of_separated_pairs_by_hand() -> None:
    """X = {0, 1}, Y = {10, 11}. Squared distances 1, 100, 121, 81, 100, 1: median
    (81 + 100)/2 = 90.5 = sigma², so k(d²) = exp(-d² / 181).

    xx = yy = k(1); xy = (k(100) + k(121) + k(81) + k(100)) / 4;
    MMD² = 2k(1) - 2xy. Of the 6 ways to split 4 points 2+2, only this split and its
    mirror reach this value, so the permutation p-value is about 2/6 = 1/3: two points a
    side can never show drift.
    """
    k = lambda d2: math.exp(-d2 / 181)  # noqa: E731
    expected = 2 * k(1) - 2 * (2 * k(100) + k(121) + k(81)) / 4
    result = mmd_permutation(np.array([[0.0], [1.0]]), np.array([[10.0], [11.0]]), permutations=600)
    assert result.bandwidth**2 == pytest.approx(90.5)
    assert result.mmd2 == pytest.approx(expected)
    assert 0.27 < result.p_value < 0.40


def brute_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """The unbiased MMD² written as its three double sums, loops and all."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma * sigma))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_vectorised_mmd_matches_the_double_sums() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
    result = mmd_permutation(x, y, permutations=50)
    assert result.mmd2 == pytest.approx(brute_mmd2(x, y, result.bandwidth))
    assert mmd_test(x, y, permutations=50) == (result.mmd2, result.p_value)


def test_permutation_p_value_bounds_and_determinism() -> None:
    """Clearly apart samples reach the smallest p, 1 / (1 + 99) = 0.01, never 0;
    one seed gives one p-value."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 5.0
    assert mmd_permutation(x, y, permutations=99).p_value == pytest.approx(0.01)
    z = rng.normal(size=(60, 4))
    a = mmd_permutation(z[:30], z[30:], permutations=200, seed=7).p_value
    assert a == mmd_permutation(z[:30], z[30:], permutations=200, seed=7).p_value
    with pytest.raises(DriftError, match="at least 2"):
        mmd_permutation(x[:1], y, permutations=10)


def test_ks_on_crafted_lengths() -> None:
    """All reference texts have 10 characters, all current ones 20: the empirical CDFs
    never overlap, D = 1; identical lengths give D = 0 and p = 1."""
    ref, cur = ["a" * 10] * 20, ["b" * 20] * 20
    by_feature = {k.feature: k for k in ks_tests(ref, cur)}
    chars = by_feature["chars"]
    assert chars.statistic == 1.0
    assert chars.p_value < 1e-6
    assert chars.corrected_p == pytest.approx(min(1.0, chars.p_value * 4))
    assert (chars.ref_mean, chars.cur_mean) == (10.0, 20.0)
    same = {k.feature: k for k in ks_tests(ref, ["c" * 10] * 15)}["chars"]
    assert same.statistic == 0.0 and same.p_value == 1.0


def test_input_statistics_by_hand() -> None:
    """ASCII share of 'Straße': 5 of 6 letters. Unknown words, leave-one-out: reference
    ['a b', 'a c'] has document frequencies a=2, b=1, c=1, so in each reference text its
    own rare word (b, c) is unknown to the other text: 1/2. Current 'a d': d unknown, 1/2;
    'b c': both known, 0."""
    assert ascii_letter_share("Straße") == pytest.approx(5 / 6)
    assert ascii_letter_share("1 + 2") == 1.0
    assert unknown_rates(["a b", "a c"], ["a d", "b c"]) == ([0.5, 0.5], [0.5, 0.0])


def test_unk_token_rate_with_a_tokenizer() -> None:
    class Tok:
        unk_token_id = 0

        def __call__(self, texts: list[str], **kwargs: object) -> dict[str, list[list[int]]]:
            return {
                "input_ids": [[0 if w.startswith("?") else 5 for w in t.split()] for t in texts]
            }

    assert unk_token_rates(["a ?b ?c d", ""], Tok()) == [0.5, 0.0]
    ks = {k.feature: k for k in ks_tests(["a b"] * 5, ["?x ?y"] * 5, tokenizer=Tok())}
    assert (ks["unknown_rate"].ref_mean, ks["unknown_rate"].cur_mean) == (0.0, 1.0)


class LengthEncoder:
    """A stand-in encoder: a text's length and word count as its 'embedding'."""

    name = "length"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[len(t) / 10, len(t.split())] for t in texts], dtype=np.float32)


def test_report_applies_one_bonferroni_factor_to_all_tests() -> None:
    """4 KS tests + MMD = 5 tests; every corrected p is min(1, 5p)."""
    ref = [f"short text {i}" for i in range(30)]
    cur = [f"a much longer text about topic number {i} and more" for i in range(30)]
    report = detect_drift(ref, cur, encoder=LengthEncoder(), permutations=99)
    assert report.tests == 5 and report.drifted
    assert report.mmd_p is not None and report.mmd_corrected_p == pytest.approx(
        min(1.0, 5 * report.mmd_p)
    )
    for ks in report.ks:
        assert ks.corrected_p == pytest.approx(min(1.0, 5 * ks.p_value))
    assert report.encoder == "length" and report.mmd_samples == (30, 30)
    ks_only = detect_drift(ref, cur, mmd=False)
    assert ks_only.tests == 4 and ks_only.mmd2 is None and ks_only.drifted
    with pytest.raises(DriftError, match="alpha"):
        detect_drift(ref, cur, mmd=False, alpha=1.5)
    with pytest.raises(DriftError, match="at least 2"):
        detect_drift(ref[:1], cur, mmd=False)


# ---------------------------------------------------------------- found / not found

NOUNS = ["dog", "cat", "man", "woman", "child", "bird", "horse", "girl", "boy", "player"]
ADJS = ["small", "big", "young", "old", "happy", "tired", "brown", "white"]
VERBS = ["runs across", "sits on", "jumps over", "looks at", "walks along", "waits near"]
PLACES = ["the grass", "a busy street", "the beach", "a wooden bench", "the river", "a wall"]
TOPICS = ["list", "dict", "string", "tuple", "set", "file", "socket", "thread"]


def captions(n: int, seed: int) -> list[str]:
    """Image-caption-like English sentences from a fixed grammar."""
    rnd = random.Random(seed)
    return [
        f"A {rnd.choice(ADJS)} {rnd.choice(NOUNS)} {rnd.choice(VERBS)} {rnd.choice(PLACES)}."
        for _ in range(n)
    ]


def code_questions(n: int, seed: int) -> list[str]:
    """Programming questions: another topic, same length range."""
    rnd = random.Random(seed)
    return [
        f"How do I {rnd.choice(['sort', 'copy', 'merge', 'reverse'])} a "
        f"{rnd.choice(TOPICS)} in Python?"
        for _ in range(n)
    ]


def min_corrected_p(report: DriftReport) -> float:
    return min(report.p_values().values())


def test_generated_same_distribution_is_not_drift() -> None:
    """Two samples of one caption grammar (different seeds): no test below alpha after
    Bonferroni. A false alarm has probability at most alpha for a random pair of samples;
    these seeds are fixed, and a biased test (one that always finds rare words new, or a
    p-value not from a valid permutation test) fails here."""
    report = detect_drift(captions(150, 1), captions(150, 2), alpha=ALPHA, permutations=500)
    assert not report.drifted, report
    assert report.encoder == "sentence-transformers/all-MiniLM-L6-v2"


def test_generated_topic_shift_and_length_shift_are_drift() -> None:
    """Captions vs programming questions (same length range, other topic): the embedding
    MMD finds it (p at its floor 1/501, x5 ≈ 0.01). Captions vs five captions run
    together: the length tests find it with p < 0.01."""
    ref = captions(150, 1)
    topic = detect_drift(ref, code_questions(150, 3), alpha=ALPHA, permutations=500)
    assert topic.drifted
    assert topic.mmd_p is not None and topic.mmd_p < 0.01
    longer = [" ".join(captions(5, 100 + i)) for i in range(150)]
    length = detect_drift(ref, longer, alpha=ALPHA, permutations=500)
    assert length.drifted
    by_feature = {k.feature: k for k in length.ks}
    assert by_feature["chars"].corrected_p < 0.01 and by_feature["words"].corrected_p < 0.01


def squad_questions(shared_data: Path) -> list[str]:
    squad = json.loads((shared_data / "qa" / "squad_v2_small.json").read_text(encoding="utf-8"))
    return [q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]]


def multi30k(shared_data: Path, lang: str) -> list[str]:
    path = shared_data / "translation" / f"multi30k_val.{lang}.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def test_real_questions_split_at_random_are_not_drift(shared_data: Path) -> None:
    """Two random halves (200 each) of the SQuAD questions come from one distribution."""
    questions = squad_questions(shared_data)
    order = np.random.default_rng(0).permutation(len(questions))
    ref = [questions[i] for i in order[:200]]
    cur = [questions[i] for i in order[200:400]]
    report = detect_drift(ref, cur, alpha=ALPHA, permutations=500)
    assert not report.drifted, report


def test_real_captions_vs_questions_and_english_vs_german_are_drift(shared_data: Path) -> None:
    """Multi30k captions vs SQuAD questions: MMD p < 0.01. English vs German captions
    (different sentences): drift with p < 0.01, and the ASCII-letter share (umlauts, ß)
    is one of the tests that sees it."""
    questions = squad_questions(shared_data)[:200]
    english = multi30k(shared_data, "en")
    german = multi30k(shared_data, "de")
    report = detect_drift(english[:200], questions, alpha=ALPHA, permutations=500)
    assert report.drifted and report.mmd_p is not None and report.mmd_p < 0.01
    lang = detect_drift(english[:200], german[500:700], alpha=ALPHA, permutations=500)
    assert lang.drifted and min_corrected_p(lang) < 0.01
    assert {k.feature: k for k in lang.ks}["ascii_letters"].corrected_p < 0.01


# ---------------------------------------------------------------- the service's monitor


def fake_report(drifted: bool) -> DriftReport:
    return DriftReport(
        drifted=drifted, alpha=0.05, n_ref=2, n_cur=2, compared="x", tests=2,
        mmd2=0.1, mmd_p=0.004, mmd_corrected_p=0.008,
    )  # fmt: skip


def test_monitor_takes_the_first_window_as_reference_then_checks_recent_inputs() -> None:
    calls: list[tuple[list[str], list[str]]] = []

    def detect(ref: Sequence[str], cur: Sequence[str]) -> DriftReport:
        calls.append((list(ref), list(cur)))
        return fake_report(drifted=True)

    m = make_metrics()
    mon = DriftMonitor(window=3, metrics=m, detect=detect)
    for text in ("r1", "r2", "r3", "c1", "c2"):
        mon.add(text)
    assert mon.check() is None and not calls  # current window holds 2 of 3
    for text in ("c3", "c4"):
        mon.add(text)
    report = mon.check()
    assert calls == [(["r1", "r2", "r3"], ["c2", "c3", "c4"])]  # the last 3 inputs
    assert report is not None and mon.last is report
    assert mon.check() is report and len(calls) == 1  # nothing new: no rerun
    assert m.registry.get_sample_value("taskloop_drift_detected") == 1.0
    assert m.registry.get_sample_value("taskloop_drift_p_value", {"test": "mmd"}) == 0.008


def test_monitor_reference_from_a_file_and_concurrent_adds(tmp_path: Path) -> None:
    """4 threads x 250 adds with a 100-input window: the window holds exactly 100."""
    ref = tmp_path / "ref.txt"
    ref.write_text("one\n\ntwo\nthree\n", encoding="utf-8")
    mon = DriftMonitor.from_file(ref, window=100, detect=lambda r, c: fake_report(False))
    assert mon.reference_size == 3

    def worker(k: int) -> None:
        for i in range(250):
            mon.add(f"{k}-{i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mon.current_size == 100 and mon.reference_size == 3
    report = mon.check()
    assert report is not None and not report.drifted


# ---------------------------------------------------------------- inputs and the CLI


def write_tasks(path: Path, questions: list[str]) -> Path:
    rows = [{"task": "qa", "question": q, "context": "Some context."} for q in questions]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_texts_reads_lines_task_rows_and_plain_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "a.txt"
    txt.write_text("first\n  \nsecond\n", encoding="utf-8")
    assert load_texts(txt).texts == ["first", "second"]
    tasks = write_tasks(tmp_path / "t.jsonl", ["Who?", "When?"])
    loaded = load_texts(tasks)
    assert (loaded.texts, loaded.what) == (["Who?", "When?"], "qa question")
    assert load_texts(tasks, field="context").texts == ["Some context.", "Some context."]
    with pytest.raises(DriftError, match="no text field 'source'"):
        load_texts(tasks, field="source")
    plain = tmp_path / "p.jsonl"
    plain.write_text('{"text": "x"}\n"y"\n{"other": 1}\n', encoding="utf-8")
    assert load_texts(plain).texts == ["x", "y"]
    with pytest.raises(InputFileError):
        load_texts(tmp_path / "missing.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe not text\n")
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_texts(binary)


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """taskloop (test)."""

    register(app)
    return app


def test_drift_cli_table_json_and_exit_statuses(tmp_path: Path) -> None:
    """A completed check exits 0 drift or not; --fail-on-drift exits 1 on drift only."""
    runner = CliRunner()
    ref = tmp_path / "ref.txt"
    ref.write_text("\n".join(captions(60, 1)), encoding="utf-8")
    same = tmp_path / "same.txt"
    same.write_text("\n".join(captions(60, 2)), encoding="utf-8")
    longer = tmp_path / "long.txt"
    longer.write_text("\n".join(" ".join(captions(4, i)) for i in range(60)), encoding="utf-8")

    drifted = runner.invoke(cli(), ["drift", str(ref), str(longer), "--no-mmd"])
    assert drifted.exit_code == 0, drifted.output
    assert "drift: yes" in drifted.output and "ks chars" in drifted.output
    failing = runner.invoke(cli(), ["drift", str(ref), str(longer), "--no-mmd", "--fail-on-drift"])
    assert failing.exit_code == DRIFT_EXIT == 1
    calm = runner.invoke(
        cli(), ["drift", str(ref), str(same), "--fail-on-drift", "--permutations", "200"]
    )
    assert calm.exit_code == 0, calm.output
    assert "drift: no" in calm.output and "mmd (embeddings)" in calm.output

    as_json = runner.invoke(cli(), ["drift", str(ref), str(longer), "--no-mmd", "--json"])
    report = DriftReport.model_validate_json(as_json.stdout)
    assert report.drifted and report.n_ref == 60 and report.compared.startswith("lines of")


def test_drift_cli_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    one = tmp_path / "one.txt"
    one.write_text("only one line\n", encoding="utf-8")
    result = runner.invoke(cli(), ["drift", str(one), str(one), "--no-mmd"])
    assert result.exit_code == 2
    assert "error[monitor.drift]" in result.output and "Traceback" not in result.output
    missing = runner.invoke(cli(), ["drift", str(tmp_path / "nope.txt"), str(one)])
    assert missing.exit_code == 7 and "error[io.file]" in missing.output


def test_new_since_check_counts_inputs_after_the_reference_window():
    """window 4: the first 4 inputs fill the reference; 3 more make 3 new inputs, and a
    check (with a stand-in test) resets the count to 0."""
    from taskloop.monitor.drift import DriftMonitor, DriftReport

    calls: list[int] = []

    def detect(ref, cur):  # type: ignore[no-untyped-def]
        calls.append(len(cur))
        return DriftReport.model_construct(drifted=False)

    monitor = DriftMonitor(window=4, min_current=2, detect=detect)
    for i in range(7):
        monitor.add(f"input {i}")
    assert monitor.reference_size == 4 and monitor.new_since_check == 3
    monitor.check()
    assert calls == [3] and monitor.new_since_check == 0
