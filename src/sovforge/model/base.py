"""`sovforge base init`: a small Llama-architecture base model built entirely from local text.

    sovforge base init --text ../shared/corpus --out runs/base --preset small --pretrain-steps 200

Steps: train a byte-level BPE tokenizer on the text → create a `LlamaForCausalLM` of the preset's shape →
optionally pre-train it for N steps on the same text (packed causal-LM batches) → save the standard HF layout
(config.json, model.safetensors, tokenizer files, generation_config.json) plus a signed manifest. The result loads
with plain `AutoModelForCausalLM.from_pretrained(path)` / `AutoTokenizer.from_pretrained(path)`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from sovforge.artifacts import build_artifact, external_model
from sovforge.model.config import BaseConfig
from sovforge.model.tokenizer import EOS, IM_END, iter_texts, train_tokenizer

# Shapes. `tiny` is what tests use (DESIGN.md: 2 layers, hidden 64); `small` ≈ 10M parameters for the demo.
# Dimensions are multiples of 64 so llm-compressor's 2:4 and group-wise quantisation apply to every Linear.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=4,
                  num_key_value_heads=2),
}


def build_model(preset: str, tokenizer: Any, max_position_embeddings: int, seed: int) -> Any:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {sorted(PRESETS)}")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,  # like the 7B Llama/Qwen2 bases; keeps quantisation of lm_head separable
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **PRESETS[preset],
    )
    model = LlamaForCausalLM(config)
    # Generation stops at the end of a document or of an assistant turn.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(IM_END)],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def pack_tokens(texts: list[str], tokenizer: Any, seq_len: int) -> Any:
    """Concatenate documents separated by EOS and cut into (N, seq_len) blocks; the tail is dropped."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=True)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // seq_len
    if n_blocks == 0:
        raise ValueError(f"only {len(ids)} tokens of text; need at least one block of {seq_len}")
    return torch.tensor(ids[: n_blocks * seq_len]).view(n_blocks, seq_len)


def pretrain(model: Any, blocks: Any, *, steps: int, batch_size: int, lr: float, seed: int) -> dict[str, Any]:
    """Short causal-LM pre-training so the demo base is not pure noise; fp32 on CPU.

    A deliberately small loop (AdamW, warm-up + cosine): serious continued pre-training is `sovforge adapt`.
    """
    import torch
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(steps), desc="pre-training base", unit="step")
    for _ in bar:
        idx = torch.randint(0, blocks.shape[0], (batch_size,), generator=generator)
        batch = blocks[idx]  # (B, T)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    seconds = time.perf_counter() - started
    return {"steps": steps, "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "tokens": steps * batch_size * blocks.shape[1], "seconds": round(seconds, 2)}


def adopt_checkpoint(source: Path, out: Path, classification: str) -> Path:
    """Make an existing local HF checkpoint (A.X, Qwen2, Llama...) a signed model artifact.

    Files are hard-linked when `out` is on the same filesystem (no copy of a 15 GB model), copied otherwise.
    The manifest names the checkpoint's content id as its input and carries the declared classification.
    """
    import os
    import shutil

    from tqdm import tqdm

    from sovforge.model.loading import load_tokenizer, model_dir

    model_dir(source)
    load_tokenizer(source)
    external = external_model(source, classification)
    with build_artifact(out, kind="model") as staging:
        files = [p for p in sorted(source.rglob("*")) if p.is_file() and p.name != "manifest.json"
                 and "__pycache__" not in p.parts]
        for path in tqdm(files, desc=f"adopting {source.name}", unit="file", leave=False):
            target = staging.path / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
        staging.finish(inputs=[external], config={"path": str(source.resolve())}, classification=classification,
                       stats={"files": len(files)}, extra={"model": {"adopted_from": str(source.resolve())}})
    return out


def init_base(cfg: BaseConfig, out: str | Path) -> Path:
    """Build (or adopt) the base model artifact described by `cfg` at `out`."""
    out = Path(out)
    if cfg.path is not None:
        return adopt_checkpoint(Path(cfg.path), out, cfg.classification)
    if not cfg.text:
        raise ValueError("base: give `text` (files/directories to train the tokenizer on) or `path`")
    texts = [t for t in iter_texts(cfg.text) if t.strip()]
    if not texts:
        raise ValueError(f"base: no text found in {[str(p) for p in cfg.text]}")
    with build_artifact(out, kind="model") as staging:
        tokenizer = train_tokenizer(texts, cfg.vocab_size, model_max_length=cfg.max_position_embeddings)
        model = build_model(cfg.preset, tokenizer, cfg.max_position_embeddings, cfg.seed)
        stats: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters()),
                                 "vocab_size": len(tokenizer), "documents": len(texts)}
        if cfg.pretrain_steps:
            blocks = pack_tokens(texts, tokenizer, cfg.seq_len)
            stats["pretrain"] = pretrain(model, blocks, steps=cfg.pretrain_steps, batch_size=cfg.batch_size,
                                         lr=cfg.learning_rate, seed=cfg.seed)
        model.save_pretrained(staging.path, safe_serialization=True)
        tokenizer.save_pretrained(staging.path)
        staging.finish(config=cfg.model_dump(mode="json"), classification="UNCLASSIFIED", stats=stats,
                       extra={"model": {"architecture": "llama", "preset": cfg.preset}})
    return out
