"""Continued pre-training on a corpus artifact: `sovforge adapt cpt --base BASE --corpus CORPUS --out OUT`.

Uses the corpus's packed token streams when they were made with the same tokenizer (sha256 of tokenizer.json),
otherwise tokenises `documents/` itself. A `replay_share` of blocks comes from local general text so the model
keeps its general ability. Output: kind "model" (full) or "adapter" (LoRA) artifact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sovforge.adapt.config import AdaptConfig
from sovforge.adapt.trainer import TrainingError, evaluate_loss, train
from sovforge.ingest.corpus import iter_documents, packed_tokens

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def corpus_tokens(corpus_dir: Path, base: Path, tokenizer: Any, split: str) -> list[int]:
    """Token stream of one split: the corpus's packed stream if it matches our tokenizer, else re-tokenised."""
    packed = packed_tokens(corpus_dir, split, tokenizer_json=base / "tokenizer.json")
    if packed is not None:
        return packed.astype("int64").tolist()
    ids: list[int] = []
    for doc in iter_documents(corpus_dir, split):
        ids.extend(tokenizer(doc["text"])["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return ids


def replay_tokens(paths: list[Path], tokenizer: Any) -> list[int]:
    ids: list[int] = []
    files = [f for p in paths for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file()]
    for f in files:
        if f.suffix.lower() in (".txt", ".md"):
            ids.extend(tokenizer(f.read_text(encoding="utf-8", errors="replace"))["input_ids"])
            ids.append(tokenizer.eos_token_id)
    return ids


def blocks(ids: list[int], seq_len: int) -> Any:
    import torch

    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def batches_of(block_tensor: Any, batch_size: int) -> list[dict[str, Any]]:
    return [{"input_ids": b, "labels": b.clone()} for b in block_tensor.split(batch_size)]


def mix_replay(domain: Any, replay: Any, share: float, seed: int) -> Any:
    """Domain blocks plus enough replay blocks that they make up `share` of the result."""
    import torch

    if share <= 0 or replay is None or len(replay) == 0:
        return domain
    wanted = round(len(domain) * share / (1 - share))
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(replay), (wanted,), generator=generator)
    return torch.cat([domain, replay[pick]])


def wrap_lora(model: Any, cfg: AdaptConfig, base: Path) -> Any:
    from peft import LoraConfig, get_peft_model

    from sovforge.model.loading import ARCHITECTURES, model_type

    targets = cfg.target_modules or ARCHITECTURES.get(model_type(base))
    if not targets:
        raise TrainingError(f"no default LoRA target modules for model type {model_type(base)!r}; set target_modules")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def run_cpt(base_path: str | Path, corpus_path: str | Path, cfg: AdaptConfig, out: str | Path) -> Path:
    """Validate inputs, train, and write the model/adapter artifact; returns its directory."""
    from sovforge.artifacts import build_artifact, open_input
    from sovforge.model.loading import load_model, load_tokenizer, model_dir

    if cfg.method == "qlora":
        raise TrainingError("qlora needs bitsandbytes 4-bit on CUDA; it is not supported by `adapt cpt` here — "
                            "use method=lora")
    base = open_input(base_path, kind="model")
    corpus = open_input(corpus_path, kind="corpus")
    base_dir = model_dir(base.path)
    tokenizer = load_tokenizer(base_dir)  # raises a clear error when the base has no tokenizer
    config = json.loads((base_dir / "config.json").read_text())
    max_len = config.get("max_position_embeddings")
    if max_len and cfg.seq_len > max_len:
        raise TrainingError(f"seq_len {cfg.seq_len} exceeds the model's max_position_embeddings {max_len}")
    train_blocks = blocks(corpus_tokens(corpus.path, base_dir, tokenizer, "train"), cfg.seq_len)
    if len(train_blocks) == 0:
        raise TrainingError(f"corpus {corpus.path} has no training text (need at least {cfg.seq_len} tokens)")
    val_blocks = blocks(corpus_tokens(corpus.path, base_dir, tokenizer, "validation"), cfg.seq_len)
    replay = blocks(replay_tokens(cfg.replay_text, tokenizer), cfg.seq_len) if cfg.replay_text else None
    if cfg.replay_share > 0 and (replay is None or len(replay) == 0):
        raise TrainingError(f"replay_share {cfg.replay_share} but replay_text has no {cfg.seq_len}-token block")
    mixed = mix_replay(train_blocks, replay, cfg.replay_share, cfg.train.seed)

    model = load_model(base_dir)
    val = batches_of(val_blocks, cfg.batch_size) if len(val_blocks) else None
    general = batches_of(replay[:32], cfg.batch_size) if replay is not None and len(replay) else None
    before = {**(evaluate_loss(model, val) if val else {}),
              **({f"general_{k}": v for k, v in evaluate_loss(model, general).items()} if general else {})}
    if cfg.method == "lora":
        model = wrap_lora(model, cfg, base_dir)
    out = Path(out)
    # A fixed run directory beside OUT: rerunning the same command resumes from its last checkpoint.
    work = out.parent / f".{out.name}.run"
    result = train(model, batches_of(mixed, cfg.batch_size), cfg.train, out_dir=work, eval_batches=val)
    after = {**(evaluate_loss(model, val) if val else {}),
             **({f"general_{k}": v for k, v in evaluate_loss(model, general).items()} if general else {})}
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch only rank 0 writes the artifact
        return out
    kind = "adapter" if cfg.method == "lora" else "model"
    with build_artifact(out, kind=kind) as staging:
        model.save_pretrained(staging.path, safe_serialization=True)
        tokenizer.save_pretrained(staging.path)
        shutil.copy(work / "metrics.jsonl", staging.path / "metrics.jsonl")
        stats = {**result.as_stats(), "train_blocks": len(train_blocks), "replay_blocks": len(mixed) - len(train_blocks),
                 "before": before, "after": after}
        staging.finish(inputs=[base, corpus], config={**cfg.model_dump(mode="json"), "base_model_path": str(base_dir)},
                       stats=stats)
    shutil.rmtree(work, ignore_errors=True)
    return out
