"""A Transformer trained from scratch on Multi30k en→de with ``taskloop train``, then
BLEU and chrF++ (sacrebleu) on test2016 with beam search.

The run goes through the same code as ``taskloop train configs/multi30k.yaml``: the
config's model is built from scratch (a BPE tokenizer trained on the training text, a
Marian-style Transformer), trained for the config's wall-clock budget with evaluation
on the validation set, and the best checkpoint translates test2016::

    python benchmarks/multi30k.py                                   # CPU, 10-minute budget
    python benchmarks/multi30k.py --config configs/multi30k-gpu.yaml  # one GPU, 6 minutes
    python benchmarks/multi30k.py --budget 60 --rows 2000           # a quick look

Multi30k's raw files (``multi30k_{train,val,test_2016_flickr}.{en,de}.gz``) are read from
``--data-dir`` (default ``../shared/data/translation``). Figures: BLEU and chrF++ on
the 1,000 test sentences (detokenised, cased, sacrebleu defaults, signature printed),
training seconds, target tokens per second, steps and parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def write_split(data_dir: Path, split: str, out: Path, rows: int | None) -> list[tuple[str, str]]:
    from machine import read_pairs, write_jsonl

    pairs = read_pairs(data_dir, f"multi30k_{split}", rows)
    write_jsonl(out, pairs, f"{split}-")
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "multi30k.yaml"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "translation"))
    parser.add_argument("--work", default="bench-out/multi30k", help="folder for data and runs")
    parser.add_argument("--budget", type=float, help="training seconds (default: the config's)")
    parser.add_argument("--rows", type=int, help="use only the first N training pairs")
    parser.add_argument("--beams", type=int, default=5, help="beam size for test2016")
    parser.add_argument("--test-rows", type=int, help="translate only the first N test sentences")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    args = parser.parse_args()

    data_dir = Path(args.data_dir)
    if not (data_dir / "multi30k_train.en.gz").is_file():
        print(f"skipped: Multi30k not found in {data_dir} (pass --data-dir)")
        return 0
    import torch

    from machine import describe
    from taskloop.train.config import load_train_config
    from taskloop.train.evaluation import generate_texts
    from taskloop.train.loop import train
    from taskloop.train.prepare import load_for_training

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    write_split(data_dir, "train", work / "train.jsonl", args.rows)
    write_split(data_dir, "val", work / "val.jsonl", None)
    test = write_split(data_dir, "test_2016_flickr", work / "test.jsonl", args.test_rows)
    test_en, test_de = [en for en, _ in test], [de for _, de in test]

    overrides = [
        f"data.train=[{work / 'train.jsonl'}]",
        f"data.eval=[{work / 'val.jsonl'}]",
        f"out={work / 'run'}",
        *args.overrides,
    ]
    if args.budget:
        overrides.append(f"run.time_budget_s={args.budget}")
    cfg = load_train_config(args.config, overrides)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    machine = describe(["torch", "transformers", "sacrebleu"], extra=gpu)
    print("\n".join(machine))
    print(f"config {args.config}: {cfg.model.init}")
    started = time.perf_counter()
    last = [0.0]

    def on_step(log: object) -> None:
        now = time.perf_counter()
        if now - last[0] >= 30:
            last[0] = now
            print(f"  step {log.step} loss {log.loss:.3f} lr {log.lr:.2e} "  # type: ignore[attr-defined]
                  f"{log.tokens_per_s:,.0f} tok/s {log.elapsed_s:.0f}s", flush=True)  # type: ignore[attr-defined]  # fmt: skip

    def on_eval(log: object) -> None:
        print(f"  eval step {log.step}: loss {log.loss:.3f} {log.tasks}", flush=True)  # type: ignore[attr-defined]

    result = train(cfg, on_step=on_step, on_eval=on_eval)
    total = time.perf_counter() - started
    model, tokenizer, kind = load_for_training(str(result.model_dir), "seq2seq")
    device = torch.device("cuda" if cfg.run.device.startswith("cuda") else cfg.run.device
                          if cfg.run.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))  # fmt: skip
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if device.type == "cuda" else None
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        hyps = generate_texts(
            model, tokenizer, test_en, kind=kind, device=device, num_beams=args.beams,
            max_new_tokens=cfg.eval.max_new_tokens, batch_size=128 if device.type == "cuda" else 32,
            max_source_tokens=cfg.data.max_source_tokens, length_penalty=cfg.eval.length_penalty,
        )  # fmt: skip
    decode_s = time.perf_counter() - t0
    import sacrebleu

    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF(word_order=2)
    bleu = bleu_metric.corpus_score(hyps, [test_de])
    chrf = chrf_metric.corpus_score(hyps, [test_de])
    figures = {
        "config": args.config,
        "machine": machine,
        "params_m": round(params / 1e6, 1),
        "train_seconds": round(result.train_seconds, 1),
        "steps": result.steps,
        "target_tokens_per_s": round(result.tokens_per_s),
        "best_step": result.best_step,
        "val_best": result.history and max(h.score for h in result.history),
        "test_bleu": round(bleu.score, 2),
        "test_chrf++": round(chrf.score, 2),
        "beams": args.beams,
        "decode_seconds": round(decode_s, 1),
        "wall_seconds": round(total, 1),
        "bleu_signature": str(bleu_metric.get_signature()),
        "chrf_signature": str(chrf_metric.get_signature()),
        "cleaned_away": result.data.cleaned_away,
        "train_pairs": result.data.train_pairs,
    }
    for i in range(3):
        print(f"  src: {test_en[i]}\n  hyp: {hyps[i]}\n  ref: {test_de[i]}")
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
