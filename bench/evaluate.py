"""Evaluate benchmark: `.venv/bin/python bench/evaluate.py [--shape qwen2-0.4b] [--limit 8] [--json OUT]`.

On the Korean defence statutes of ../shared/corpus (split into articles; every 8th article is
validation), with a Qwen2-shaped model of random weights built locally (speed does not depend on what the
weights say, DESIGN 4b):

1. Harness: `sovforge evaluate`'s scoring (our safe loader + lm-eval's `hf` backend around the loaded model,
   task objects built once) side by side with plain lm-eval (`simple_evaluate(model="hf", pretrained=PATH)`)
   on the same generated tasks (sovforge_ppl, sovforge_cloze): the numbers must be identical; the time
   ratio is the cost.
2. Canary probe (--candidates 200 x 3 canaries + greedy extraction) at batch size 1 vs 8: same exposures, time
   ratio (why `evaluate.batch_size` defaults to 8).
3. Speed and size of the model as the report records them (sovforge.compress.measure).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "ko-defense-law"
SHAPES = {  # Qwen2 layouts (A.X 4.0 Light is Qwen2); vocabulary = the local tokenizer's
    "qwen2-0.4b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    ),
    "qwen2-30m": dict(
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
    ),
}


def statute_corpus(out: Path) -> Path:
    """A corpus artifact of statute articles (`##### 제N조 ...` blocks) in the layout ingest writes."""
    from sovforge.artifacts import build_artifact

    docs = []
    for path in sorted(CORPUS.glob("*.md")):
        body = path.read_text(encoding="utf-8").split("\n---\n", 1)[-1]
        for i, article in enumerate(re.split(r"\n(?=#{5} 제\d+조)", body)):
            text = re.sub(r"[#*\\]+", "", article).strip()
            if len(text) >= 80:
                docs.append(
                    {
                        "id": f"{path.stem}-{i}",
                        "text": text,
                        "source": str(path),
                        "lang": "ko",
                        "classification": "UNCLASSIFIED",
                        "redactions": [],
                        "split": "validation" if len(docs) % 8 == 7 else "train",
                    }
                )
    with build_artifact(out, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        (staging.path / "documents" / "part-0.jsonl").write_text(
            "\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n", encoding="utf-8"
        )
        staging.finish(inputs=[], config={"bench": "statute articles"}, stats={"documents": len(docs)})
    return out


def random_model(out: Path, shape: str, text: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig
    from sovforge.model.loading import load_tokenizer

    tok_dir = init_base(
        BaseConfig(text=[text], preset="tiny", vocab_size=8192, pretrain_steps=0), out / "tok"
    )
    tokenizer = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPES[shape],
    )
    Qwen2ForCausalLM(config).save_pretrained(out / shape, safe_serialization=True)
    tokenizer.save_pretrained(out / shape)
    return out / shape


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-0.4b")
    parser.add_argument("--limit", type=int, default=8, help="documents / items per task")
    parser.add_argument("--candidates", type=int, default=200, help="canary candidates (exposure <= log2 N)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from sovforge.compress.measure import machine
    from sovforge.evaluate.canary import canary_probe, make_canaries
    from sovforge.evaluate.config import SpeedConfig
    from sovforge.evaluate.harness import load_suite, local_lm, score
    from sovforge.evaluate.maketasks import make_tasks
    from sovforge.evaluate.models import resolve_models
    from sovforge.evaluate.speed import measure_speed

    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    corpus = statute_corpus(work / "corpus")
    counts = make_tasks(corpus, work / "tasks", max_items=200)
    model_dir = random_model(work, args.shape, CORPUS)
    suite = ["sovforge_ppl", "sovforge_cloze"]
    out: dict = {"machine": machine(), "shape": args.shape, "limit": args.limit, "tasks": counts}

    def ours_run() -> dict:
        manager, tasks = load_suite(suite, work / "tasks")
        subject = resolve_models([model_dir])[0][0]
        model, tokenizer = subject.load()
        return score(local_lm(model, tokenizer, batch_size=8), tasks, manager, limit=args.limit)

    def plain_run() -> dict:
        return simple_evaluate(
            model="hf",
            model_args=f"pretrained={model_dir},dtype=float32,device=cpu",
            tasks=suite,
            task_manager=TaskManager(include_path=str(work / "tasks"), include_defaults=False),
            limit=args.limit,
            batch_size=8,
            bootstrap_iters=0,
        )["results"]

    # Alternate A B A B and keep each side's best: on a shared machine the load moves between runs, and the
    # first run also pays the datasets cache of the task files.
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(2):
        for name, run in (("ours", ours_run), ("plain", plain_run)):
            start = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - start)
            if name == "ours":
                ours = result
            else:
                plain = result
    out["ours_s"], out["plain_s"], out["runs_s"] = min(times["ours"]), min(times["plain"]), times
    subject = resolve_models([model_dir])[0][0]
    model, tokenizer = subject.load()
    out["same_numbers"] = all(
        abs(plain[t][f"{m},none"] - ours[t][m]) <= 1e-6 * abs(ours[t][m]) + 1e-9
        for t, m in (
            ("sovforge_ppl", "word_perplexity"),
            ("sovforge_ppl", "bits_per_byte"),
            ("sovforge_cloze", "acc"),
        )
    )
    out["scores"] = ours

    canaries = make_canaries(3, seed=1)
    for batch in (1, 8):
        start = time.perf_counter()
        lm = local_lm(model, tokenizer, batch_size=batch)
        probe = canary_probe(lm, canaries, n_candidates=args.candidates)
        out[f"canary_b{batch}_s"] = time.perf_counter() - start
        out[f"canary_b{batch}_exposures"] = [round(c["exposure"], 6) for c in probe["per_canary"]]
    out["speed"] = measure_speed(subject, model, tokenizer, SpeedConfig())
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    print(
        f"\n| step | sovforge | peer | ratio |\n|---|---|---|---|\n"
        f"| score {suite} limit {args.limit} | {out['ours_s']:.1f} s | "
        f"plain lm-eval {out['plain_s']:.1f} s | "
        f"{out['ours_s'] / out['plain_s']:.2f}x (same numbers: {out['same_numbers']}) |\n"
        f"| canary probe 3x{args.candidates} | batch 8: {out['canary_b8_s']:.1f} s | "
        f"batch 1: {out['canary_b1_s']:.1f} s | "
        f"{out['canary_b1_s'] / out['canary_b8_s']:.1f}x faster (same exposures: "
        f"{out['canary_b1_exposures'] == out['canary_b8_exposures']}) |"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
