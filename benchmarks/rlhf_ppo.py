"""PPO step time and samples/s: taskloop's PPO on a tiny seq2seq and a tiny causal policy,
and TRL's experimental ``PPOTrainer`` doing the same work on the same causal policy, in
the same process (the baseline measured in the same run).

The work of one step, the same for every row: ``--batch-size`` prompts (English
Multi30k captions when ../shared/data is present, else the tiny models' built-in
corpus), one sampled response each of up to ``--max-new-tokens`` tokens, a reward from
the same tiny sequence-classification reward model (a GPT-2 classifier over prompt +
response), a fixed KL penalty to a frozen reference, GAE, then ``--ppo-epochs`` passes
over mini-batches of ``--mini-batch-size`` with one AdamW step each. The policies are
built from config (``taskloop.models.tiny``: ``--width``, ``--layers``; a word-level
vocabulary over the prompts), the reward model and TRL's value model from the causal
policy's weights. torch runs on one thread for both.

Where the implementations differ by design (and so in cost): TRL's value model is a
second full network (its trunk runs forward and backward again), taskloop's value head
is one linear layer on the policy's own hidden states; TRL always generates
``response_length`` tokens and cuts at the end token afterwards, taskloop stops a
response at its end token (the untrained tiny policies rarely end early, so both
generate ~all tokens: the mean response length is printed); TRL keeps generate's logits,
taskloop recomputes them in one forward pass.

TRL is not a dependency of taskloop. Its last release that ships ``PPOTrainer`` (in
``trl.experimental.ppo``) is 1.12.0 (1.13 removed it); install it into a separate venv::

    python3.11 -m venv /tmp/trl-venv
    /tmp/trl-venv/bin/pip install torch==2.13.0 trl==1.12.0 -e .
    /tmp/trl-venv/bin/python benchmarks/rlhf_ppo.py

Run with taskloop's own venv (``.venv/bin/python benchmarks/rlhf_ppo.py``) it says why
TRL is skipped and still measures taskloop.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machine import describe, read_lines, work_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRL_VERSION = "1.12.0"


def log(message: str = "") -> None:
    print(message, flush=True)


@dataclass
class Row:
    kind: str
    implementation: str
    step_seconds: list[float]  # the measured steps (warm-up left out)
    batch_size: int
    response_tokens: float

    @property
    def median(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.median


@dataclass(frozen=True)
class Work:
    steps: int
    warmup: int
    batch_size: int
    mini_batch_size: int
    ppo_epochs: int
    max_new_tokens: int
    width: int
    layers: int
    lr: float = 1e-5
    kl_coef: float = 0.05
    seed: int = 0


def prompts(n: int) -> list[str]:
    """Multi30k English captions (the first ``n``), else the built-in tiny corpus."""
    path = SHARED / "translation" / "multi30k_train.en.gz"
    if path.is_file():
        return [line for line in read_lines(path, n) if line]
    from taskloop.models.tiny import BUILTIN_CORPUS

    return [BUILTIN_CORPUS[i % len(BUILTIN_CORPUS)] for i in range(n)]


def build_models(root: Path, texts: Sequence[str], work: Work) -> dict[str, Path]:
    from taskloop.models.tiny import build_tiny_model

    return {
        kind: build_tiny_model(
            root / kind, kind, texts=texts, width=work.width, layers=work.layers,  # type: ignore[arg-type]
            max_length=128, seed=work.seed,
        )
        for kind in ("seq2seq", "causal")
    }  # fmt: skip


def load_classifier(path: Path) -> Any:
    """A one-logit GPT-2 sequence classifier from the causal policy's weights."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = model.config.pad_token_id or 0
    return model.eval()


def classifier_reward(path: Path) -> Callable[..., Any]:
    """taskloop's RewardFn around the reward model: the classifier's logit on prompt +
    response (what TRL's ``get_reward`` reads at the last real token)."""
    import torch
    from transformers import AutoTokenizer

    from taskloop.rlhf.records import Rewards

    model = load_classifier(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"

    def reward(examples: Sequence[Any], texts: Sequence[str]) -> Rewards:
        joined = [f"{ex.source} {t}" for ex, t in zip(examples, texts, strict=True)]
        enc = tok(joined, padding=True, return_tensors="pt")
        with torch.no_grad():
            scores = model(**enc).logits[:, 0].tolist()
        return Rewards(total=scores, parts={"reward_model": scores})

    return reward


def run_taskloop(kind: str, model: Path, reward_path: Path, texts: Sequence[str],
                 work: Work, out: Path) -> Row:  # fmt: skip
    from taskloop.data.records import TranslateExample, Where
    from taskloop.rlhf.ppo import PPOConfig, ppo_train

    examples = [
        TranslateExample(id=str(i), where=Where(file="bench", row=i + 1), source=t)
        for i, t in enumerate(texts)
    ]
    config = PPOConfig(
        steps=work.warmup + work.steps, batch_size=work.batch_size,
        mini_batch_size=work.mini_batch_size, ppo_epochs=work.ppo_epochs, lr=work.lr,
        max_new_tokens=work.max_new_tokens, kl_target=None, init_kl_coef=work.kl_coef,
        score_norm=False, device="cpu", threads=1, seed=work.seed,
    )  # fmt: skip
    result = ppo_train(model, examples, classifier_reward(reward_path), out, config)
    measured = result.steps[work.warmup :]
    return Row(
        kind, "taskloop", [s.seconds for s in measured], work.batch_size,
        statistics.mean(s.response_length for s in measured),
    )  # fmt: skip


def trl_missing() -> str | None:
    """Why TRL's PPOTrainer cannot run here (None when it can)."""
    try:
        import trl
    except ImportError:
        return (
            f"trl is not installed in this interpreter ({sys.executable}); TRL is no "
            f"dependency of taskloop: install trl=={TRL_VERSION} into a separate venv "
            "(see this script's docstring)"
        )
    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: F401
    except ImportError as exc:
        return (
            f"trl {trl.__version__} has no trl.experimental.ppo.PPOTrainer ({exc}); "
            f"{TRL_VERSION} is the last release that ships it"
        )
    return None


def run_trl(model: Path, texts: Sequence[str], work: Work, out: Path, *, gc: bool = True) -> Row:
    """TRL's PPOTrainer for ``warmup + steps`` steps, timed between its step callbacks.

    ``gc=False`` turns the two ``gc.collect()`` calls of each TRL step into no-ops (what
    the step costs without them: they scan every Python object of the process).
    """
    import types

    import torch
    import trl.experimental.ppo.ppo_trainer as trl_module
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(model)
    tok.padding_side = "left"
    data = Dataset.from_dict({"input_ids": [tok(t)["input_ids"] for t in texts]})
    policy = AutoModelForCausalLM.from_pretrained(model)
    ref = AutoModelForCausalLM.from_pretrained(model)
    stamps: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            stamps.append(time.perf_counter())

    steps = work.warmup + work.steps
    args = PPOConfig(
        output_dir=str(out), per_device_train_batch_size=work.batch_size,
        gradient_accumulation_steps=1, num_mini_batches=work.batch_size // work.mini_batch_size,
        num_ppo_epochs=work.ppo_epochs, total_episodes=work.batch_size * steps,
        response_length=work.max_new_tokens, learning_rate=work.lr, kl_coef=work.kl_coef,
        kl_estimator="k1", stop_token="eos", num_sample_generations=0, use_cpu=True,
        report_to="none", save_strategy="no", seed=work.seed, disable_tqdm=True,
        logging_steps=10**6, local_rollout_forward_batch_size=work.batch_size,
    )  # fmt: skip
    torch.manual_seed(work.seed)
    real_gc = trl_module.gc
    if not gc:
        trl_module.gc = types.SimpleNamespace(collect=lambda *a: 0)  # type: ignore[assignment]
    trainer = PPOTrainer(
        args=args, processing_class=tok, model=policy, ref_model=ref,
        reward_model=load_classifier(model), value_model=load_classifier(model),
        train_dataset=data, callbacks=[Clock()],
    )  # fmt: skip
    try:
        trainer.train()
    finally:
        trl_module.gc = real_gc
    times = [b - a for a, b in itertools.pairwise(stamps)]
    if len(times) != steps:
        raise SystemExit(f"TRL ran {len(times)} steps, expected {steps}")
    name = f"TRL {_trl_version()} PPOTrainer" + ("" if gc else ", gc.collect() off")
    return Row("causal", name, times[work.warmup :],
               work.batch_size, float(work.max_new_tokens))  # fmt: skip


def _trl_version() -> str:
    import trl

    return str(trl.__version__)


def table(rows: Sequence[Row], work: Work) -> list[str]:
    base = {r.kind: r for r in rows if r.implementation == "taskloop"}
    lines = [
        "| kind | implementation | step time (median) | steps measured | samples/s "
        "| response tokens | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = base.get(r.kind)
        if r.implementation == "taskloop" or ref is None:
            ratio = "1.00 (baseline)" if r.implementation == "taskloop" else "-"
        else:
            ratio = f"{r.median / ref.median:.2f}× taskloop's time"
        lines.append(
            f"| {r.kind} | {r.implementation} | {r.median * 1000:.0f} ms | {len(r.step_seconds)} | "
            f"{r.samples_per_s:.1f} | {r.response_tokens:.1f} | {ratio} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="causal runs of each side, alternating which goes first",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mini-batch-size", type=int, default=4)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--no-trl", action="store_true", help="measure taskloop only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--work", type=Path, help="keep models and runs here")
    opts = parser.parse_args(argv)  # fmt: skip
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("taskloop").setLevel(logging.WARNING)
    work = Work(
        steps=opts.steps, warmup=opts.warmup, batch_size=opts.batch_size,
        mini_batch_size=opts.mini_batch_size, ppo_epochs=opts.ppo_epochs,
        max_new_tokens=opts.max_new_tokens, width=opts.width, layers=opts.layers,
    )  # fmt: skip
    if work.batch_size % work.mini_batch_size:
        raise SystemExit("--batch-size must be a multiple of --mini-batch-size (TRL needs it)")
    why_not = "--no-trl" if opts.no_trl else trl_missing()
    for line in describe(["torch", "transformers", "trl"], "CPU, torch threads 1"):
        log(line)
    log(
        f"work per step: {work.batch_size} prompts, ≤{work.max_new_tokens} new tokens, "
        f"{work.ppo_epochs} epochs × {work.batch_size // work.mini_batch_size} mini-batches "
        f"of {work.mini_batch_size}; policies width {work.width}, {work.layers} layers; "
        f"{work.warmup} warm-up + {work.steps} measured steps per run"
    )
    rows: list[Row] = []
    with work_dir(opts.work, prefix="taskloop-ppo-bench-") as root:
        texts = prompts(max(64, work.batch_size * 4))
        models = build_models(root, texts, work)
        reward_path = models["causal"]
        log("taskloop seq2seq ...")
        rows.append(run_taskloop("seq2seq", models["seq2seq"], reward_path, texts, work,
                                 root / "run-seq2seq"))  # fmt: skip
        sides = ["taskloop", "trl", "trl-nogc"]
        causal: dict[str, list[Row]] = {side: [] for side in sides}
        for r in range(opts.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                if side != "taskloop" and why_not:
                    continue
                log(f"round {r + 1}: {side} causal ...")
                if side == "taskloop":
                    row = run_taskloop("causal", models["causal"], reward_path, texts, work,
                                       root / f"run-causal-{r}")  # fmt: skip
                else:
                    row = run_trl(models["causal"], texts, work, root / f"{side}-{r}",
                                  gc=side == "trl")  # fmt: skip
                causal[side].append(row)
        for side in sides:
            got = causal[side]
            if got:
                rows.append(Row("causal", got[0].implementation,
                                [t for g in got for t in g.step_seconds], work.batch_size,
                                statistics.mean(g.response_tokens for g in got)))  # fmt: skip
    log()
    for line in table(rows, work):
        log(line)
    if why_not:
        log(f"\nTRL not measured: {why_not}")
    if opts.json:
        opts.json.write_text(json.dumps({
            "work": work.__dict__, "trl_skipped": why_not,
            "rows": [{"kind": r.kind, "implementation": r.implementation,
                      "median_s": r.median, "samples_per_s": r.samples_per_s,
                      "steps_s": r.step_seconds, "response_tokens": r.response_tokens}
                     for r in rows],
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
