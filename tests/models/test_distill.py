"""Knowledge distillation: the loss against hand-computed values, tokenizer checks, routing
rows to task specialists, and a tiny student that moves toward its teacher."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from taskloop.models.distill import (
    check_compatible,
    distillation_loss,
    distillation_terms,
    knowledge_distillation,
    teacher_logits,
)
from taskloop.models.tiny import build_tiny_model, build_tokenizer
from taskloop.train.errors import DistillError

STUDENT = [[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]]  # [B=1, T=2, V=3]
TEACHER = [[[3.0, 2.0, 1.0], [1.0, 0.0, 0.0]]]
LABELS = [[2, 0]]


def _softmax(xs: list[float], t: float = 1.0) -> list[float]:
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def _kl(teacher: list[float], student: list[float], t: float) -> float:
    p, q = _softmax(teacher, t), _softmax(student, t)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


def _ce(student: list[float], label: int) -> float:
    return -math.log(_softmax(student)[label])


def _tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)


def test_loss_matches_hand_computation() -> None:
    """T = 2, alpha = 0.5 on one row of two tokens over a 3-word vocabulary.

    Position i: p_t = softmax(t_i / 2), p_s = softmax(s_i / 2),
    KL_i = Σ_v p_t(v) · (log p_t(v) − log p_s(v)); CE_i = −log softmax(s_i)[y_i].
    loss = 0.5 · 2² · (KL_0 + KL_1) / 2 + 0.5 · (CE_0 + CE_1) / 2, where
    s_0 = (1, 2, 3), t_0 = (3, 2, 1), y_0 = 2 and s_1 = (0, 0, 0), t_1 = (1, 0, 0), y_1 = 0.
    """
    s, t, y = _tensors()
    kl = (_kl(TEACHER[0][0], STUDENT[0][0], 2) + _kl(TEACHER[0][1], STUDENT[0][1], 2)) / 2
    ce = (_ce(STUDENT[0][0], 2) + _ce(STUDENT[0][1], 0)) / 2
    expected = 0.5 * 4 * kl + 0.5 * ce
    got = distillation_loss(s, t, y, temperature=2.0, alpha=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got_kl, got_ce = distillation_terms(s, t, y, temperature=2.0)
    assert (got_kl.item(), got_ce.item()) == pytest.approx((kl, ce), rel=1e-6)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_scaled_kl() -> None:
    """alpha = 0 leaves mean CE = (CE_0 + CE_1) / 2; alpha = 1 leaves T² · mean KL (T = 3)."""
    s, t, y = _tensors()
    ce = (_ce(STUDENT[0][0], 2) + _ce(STUDENT[0][1], 0)) / 2
    kl = (_kl(TEACHER[0][0], STUDENT[0][0], 3) + _kl(TEACHER[0][1], STUDENT[0][1], 3)) / 2
    assert distillation_loss(s, t, y, temperature=3.0, alpha=0.0).item() == pytest.approx(ce)
    assert distillation_loss(s, t, y, temperature=3.0, alpha=1.0).item() == pytest.approx(9 * kl)


def test_ignored_positions_count_in_neither_term() -> None:
    """With y_1 = -100 only position 0 counts: loss = 0.5 · 4 · KL_0 + 0.5 · CE_0."""
    s, t, _ = _tensors()
    y = torch.tensor([[2, -100]])
    expected = 0.5 * 4 * _kl(TEACHER[0][0], STUDENT[0][0], 2) + 0.5 * _ce(STUDENT[0][0], 2)
    assert distillation_loss(s, t, y, temperature=2.0, alpha=0.5).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_identical_logits_have_zero_kl() -> None:
    s, _, y = _tensors()
    kl, _ = distillation_terms(s, s.clone(), y, temperature=2.0)
    assert kl.item() == pytest.approx(0.0, abs=1e-7)


def test_student_padding_columns_are_ignored_and_a_smaller_student_is_refused() -> None:
    """A 4th student column (embedding padding, logit 50) leaves the KL unchanged; a student
    with fewer columns than the teacher cannot be compared."""
    s, t, y = _tensors()
    padded = torch.cat([s, torch.full((1, 2, 1), 50.0)], dim=-1)
    kl_padded, _ = distillation_terms(padded, t, y, temperature=2.0)
    kl, _ = distillation_terms(s, t, y, temperature=2.0)
    assert kl_padded.item() == pytest.approx(kl.item(), rel=1e-6)
    with pytest.raises(DistillError, match="smaller than the teacher"):
        distillation_terms(s[..., :2], t, y)


def test_different_tokenizers_are_refused_naming_teacher_and_token() -> None:
    """Vocabularies ``<pad> </s> <unk> <s> hello world`` vs ``... world hello``: 'hello' is
    id 4 for the teacher and 5 for the student."""
    teacher = build_tokenizer(["hello world"])
    student = build_tokenizer(["world hello"])
    with pytest.raises(DistillError) as err:
        check_compatible(student, {"qa": teacher})
    message = str(err.value)
    assert "teacher 'qa' and the student use different tokenizers" in message
    assert "'hello' is 4 in the teacher and 5 in the student" in message
    assert message.endswith("use a student built with the teacher's tokenizer")
    check_compatible(student, {"qa": build_tokenizer(["world hello"])})  # same: no error


def test_kinds_that_differ_are_refused(tmp_path: Path) -> None:
    """Same words, so the same vocabulary, but a T5 teacher cannot teach a GPT-2 student."""
    from transformers import AutoModelForCausalLM

    s2s = build_tiny_model(tmp_path / "s2s", "seq2seq")
    causal = build_tiny_model(tmp_path / "causal", "causal")
    teacher = AutoModelForSeq2SeqLM.from_pretrained(s2s)
    student = AutoModelForCausalLM.from_pretrained(causal)
    tok_t, tok_s = AutoTokenizer.from_pretrained(s2s), AutoTokenizer.from_pretrained(causal)
    with pytest.raises(DistillError, match="teacher 'general' is a seq2seq model"):
        check_compatible(
            tok_s, {"general": tok_t}, student_model=student, teacher_models={"general": teacher}
        )


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three T5s with one tokenizer (same corpus) and different weights (seeds 0, 1, 2)."""
    root = tmp_path_factory.mktemp("distill")
    paths = {name: build_tiny_model(root / name, "seq2seq", seed=i) for i, name in
             enumerate(("student", "qa", "summarize"))}  # fmt: skip
    models = {name: AutoModelForSeq2SeqLM.from_pretrained(p).eval() for name, p in paths.items()}
    return {"models": models, "tokenizer": AutoTokenizer.from_pretrained(paths["student"])}


def _batch(tokenizer: Any, n: int) -> dict[str, torch.Tensor]:
    sources = [
        "The model runs on a single GPU",
        "A dog is running across the green meadow",
        "The council voted",
        "Ein Hund rennt",
    ][:n]
    targets = ["Das Modell läuft", "Ein Hund rennt", "seven to two", "A dog is running"][:n]
    enc = tokenizer(sources, padding=True, return_tensors="pt")
    labels = tokenizer(text_target=targets, padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    return {**enc, "labels": labels}


def test_rows_go_to_their_task_teacher_each_run_once(family: dict[str, Any]) -> None:
    """Rows (qa, summarize, qa): rows 0 and 2 equal the qa teacher's own logits on the
    batch, row 1 the summarize teacher's, and each teacher runs exactly once."""
    models, tok = family["models"], family["tokenizer"]
    batch = _batch(tok, 3)
    teachers = {"qa": models["qa"], "summarize": models["summarize"]}
    calls = {name: 0 for name in teachers}
    hooks = [
        m.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
        for name, m in teachers.items()
    ]
    try:
        got = teacher_logits(teachers, ["qa", "summarize", "qa"], batch)
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"qa": 1, "summarize": 1}
    with torch.no_grad():
        own = {name: m(**batch).logits for name, m in teachers.items()}
    assert got.shape == own["qa"].shape
    torch.testing.assert_close(got[0], own["qa"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], own["qa"][2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], own["summarize"][1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(own["qa"][1], own["summarize"][1])  # the routing is visible


def test_a_task_without_teacher_needs_a_general_one(family: dict[str, Any]) -> None:
    models, tok = family["models"], family["tokenizer"]
    batch = _batch(tok, 2)
    with pytest.raises(DistillError, match="no teacher for task 'translate'"):
        teacher_logits({"qa": models["qa"]}, ["qa", "translate"], batch)
    got = teacher_logits({"qa": models["qa"], "*": models["summarize"]}, ["qa", "translate"], batch)
    with torch.no_grad():
        general = models["summarize"](**batch).logits
    torch.testing.assert_close(got[1], general[1], atol=1e-5, rtol=1e-5)


def test_distilling_lowers_the_kl_to_the_teacher(family: dict[str, Any]) -> None:
    """30 Adam steps on KL alone (alpha = 1) pull a random student toward a random teacher:
    the KL must fall to under half its starting value."""
    import copy

    models, tok = family["models"], family["tokenizer"]
    student = copy.deepcopy(models["student"]).train()
    teachers = {"*": models["qa"]}
    batch = _batch(tok, 4)
    tasks = ["qa"] * 4
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    torch.manual_seed(0)
    kls = []
    for _ in range(30):
        out = knowledge_distillation(student, teachers, tasks, batch, temperature=2.0, alpha=1.0)
        optimizer.zero_grad()
        out.loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        kls.append(out.kl.item())
    student.eval()
    with torch.no_grad():
        final = knowledge_distillation(student, teachers, tasks, batch, alpha=1.0).kl.item()
    assert final < 0.5 * kls[0], kls
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


def test_self_distillation_has_zero_kl_and_the_models_own_loss(
    family: dict[str, Any], tmp_path: Path
) -> None:
    """A model taught by itself: KL = 0 and CE = the loss Hugging Face computes from the
    labels, for a seq2seq model and for a causal LM (whose logits must be shifted)."""
    from transformers import AutoModelForCausalLM

    from taskloop.data.pairs import Pair
    from taskloop.models.prune import encode_pairs

    t5, tok = family["models"]["qa"], family["tokenizer"]
    batch = _batch(tok, 2)
    out = knowledge_distillation(t5, {"*": t5}, ["qa", "qa"], batch)
    with torch.no_grad():
        own = t5(**batch).loss
    assert out.kl.item() == pytest.approx(0.0, abs=1e-6)
    assert out.ce.item() == pytest.approx(own.item(), rel=1e-5)

    path = build_tiny_model(tmp_path / "gpt2", "causal")
    gpt2 = AutoModelForCausalLM.from_pretrained(path).eval()  # type: ignore[no-untyped-call]
    gtok = AutoTokenizer.from_pretrained(path)
    pairs = [Pair("qa", "The model runs on", "a single GPU", "1", "f:1"),
             Pair("qa", "A dog", "is running", "2", "f:2")]  # fmt: skip
    (cbatch,) = encode_pairs(gtok, pairs, kind="causal")
    out = knowledge_distillation(gpt2, {"*": gpt2}, ["qa", "qa"], cbatch)
    with torch.no_grad():
        own = gpt2(**cbatch).loss
    assert out.kl.item() == pytest.approx(0.0, abs=1e-6)
    assert out.ce.item() == pytest.approx(own.item(), rel=1e-5)


def test_left_padded_causal_rows_see_the_positions_of_unpadded_ones(tmp_path: Path) -> None:
    """Training left-pads causal batches and runs them with position_ids =
    cumsum(attention_mask) − 1 (clamped at 0), so a row's real tokens sit at positions
    0..n−1 whatever its padding. Distillation must do the same for student and teachers:
    each row's logits at its real positions equal those of the row run alone, unpadded
    (default positions 0..n−1). Without position_ids the short row's tokens would sit at
    positions 3.. and its logits would differ."""
    from transformers import AutoModelForCausalLM

    paths = [build_tiny_model(tmp_path / f"gpt2-{i}", "causal", seed=i) for i in (0, 1)]
    student, teacher = (AutoModelForCausalLM.from_pretrained(p) for p in paths)
    student.eval()  # type: ignore[no-untyped-call]
    teacher.eval()  # type: ignore[no-untyped-call]
    tok = AutoTokenizer.from_pretrained(paths[0])
    rows = [tok(text)["input_ids"] for text in ("The model runs on a single GPU", "A dog")]
    width = max(len(r) for r in rows)
    assert width - min(len(r) for r in rows) >= 2  # the short row really is padded
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    seen: list[torch.Tensor] = []
    hook = student.register_forward_hook(lambda _m, _a, out: seen.append(out.logits.detach()))
    try:
        knowledge_distillation(student, {"*": teacher}, ["qa", "qa"], batch)
    finally:
        hook.remove()
    soft = teacher_logits({"*": teacher}, ["qa", "qa"], batch)
    with torch.no_grad():
        for i, row in enumerate(rows):
            alone = torch.tensor([row])
            real = slice(width - len(row), width)
            own_s, own_t = student(input_ids=alone).logits[0], teacher(input_ids=alone).logits[0]
            torch.testing.assert_close(seen[0][i, real], own_s, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(soft[i, real], own_t, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_distillation_on_gpu_matches_cpu(family: dict[str, Any]) -> None:
    """Student on CUDA in bf16, a teacher on CUDA in fp32, the batch on the CPU: the terms
    match the CPU fp32 ones within bf16 precision, and the loss backpropagates."""
    import copy

    models, tok = family["models"], family["tokenizer"]
    batch = _batch(tok, 3)
    tasks = ["qa", "summarize", "qa"]
    cpu = knowledge_distillation(
        models["student"], {"qa": models["qa"], "*": models["summarize"]}, tasks, batch
    )
    student = copy.deepcopy(models["student"]).to("cuda", dtype=torch.bfloat16)
    teachers = {
        "qa": copy.deepcopy(models["qa"]).cuda(),
        "*": copy.deepcopy(models["summarize"]).cuda(),
    }
    gpu_batch = {k: v.cuda() for k, v in batch.items()}
    out = knowledge_distillation(student, teachers, tasks, gpu_batch)
    out.loss.backward()  # type: ignore[no-untyped-call]
    assert out.kl.dtype == torch.float32 and out.kl.device.type == "cuda"
    assert out.kl.item() == pytest.approx(cpu.kl.item(), rel=0.1, abs=1e-3)
    assert out.ce.item() == pytest.approx(cpu.ce.item(), rel=0.05)
    assert all(p.grad is not None for p in student.parameters())
