"""Continued pre-training on a corpus artifact: `sovforge adapt cpt --base BASE --corpus CORPUS --out OUT`.

Steps, top to bottom in `run_cpt`:
1. check the base (tokenizer present, seq_len within the model) and the method (QLoRA needs CUDA) — no weights yet;
2. token streams: the corpus's packed `packed/<split>.npy` (memory-mapped) when ingest made it with this base's
   tokenizer, else `documents/` tokenised here into an int32 array (4 bytes/token, never a list of Python ints);
3. blocks: `TokenBlocks` cuts (batch, seq_len) tensors out of those arrays on demand, so memory is the model plus
   one batch, not the corpus. A `replay_share` of blocks comes from local general text (`replay_text`) so the
   model keeps its general ability; the last blocks of that text are held out to measure general perplexity;
4. validation perplexity before, `train()` (the one loop: resumable, metrics JSONL), perplexity after;
5. the artifact: kind "model" (full) or "adapter" (LoRA/QLoRA), naming base and corpus, before/after in stats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sovforge.adapt.config import AdaptConfig
from sovforge.adapt.methods import check_base, fingerprint, load_for_training, resolve_method, run_dir, write_result
from sovforge.adapt.trainer import TrainingError, evaluate_loss, train
from sovforge.ingest.corpus import iter_documents, packed_meta, packed_tokens

DOMAIN, REPLAY = 0, 1  # stream index of a block reference


def text_stream(texts: Iterable[str], tokenizer: Any) -> np.ndarray:
    """Texts tokenised and concatenated, each followed by EOS (the layout of ingest's packed streams)."""
    parts = [np.asarray(tokenizer(text, verbose=False)["input_ids"] + [tokenizer.eos_token_id], dtype=np.int32)
             for text in texts if text]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def corpus_stream(corpus_dir: Path, base_dir: Path, tokenizer: Any, split: str) -> tuple[np.ndarray, str]:
    """One split's token stream and where it came from: "packed" (memmap, same tokenizer) or "tokenised"."""
    packed = packed_tokens(corpus_dir, split, tokenizer_json=base_dir / "tokenizer.json")
    if packed is not None:
        if packed.ndim != 1:
            raise TrainingError(f"{corpus_dir}/packed/{split}.npy is not a 1-D token stream (shape {packed.shape})")
        return packed, "packed"
    return text_stream((doc.get("text", "") for doc in iter_documents(corpus_dir, split)), tokenizer), "tokenised"


def replay_stream(paths: list[Path], tokenizer: Any) -> np.ndarray:
    """General text for replay: .txt/.md files under the given paths, in a stable order."""
    files = [f for p in paths for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise TrainingError(f"replay_text not found: {missing}")
    return text_stream((f.read_text(encoding="utf-8", errors="replace") for f in files
                        if f.suffix.lower() in (".txt", ".md")), tokenizer)


class TokenBlocks(Sequence):
    """Micro-batches over token streams without copying them: item i = `batch_size` blocks of `seq_len` tokens.

    `refs` is an (N, 2) int64 array of (stream index, block index); block b of a stream is tokens
    [b * seq_len, (b + 1) * seq_len). Each __getitem__ reads only its blocks (from a memmap: only those pages).
    """

    def __init__(self, streams: Sequence[np.ndarray], refs: np.ndarray, seq_len: int, batch_size: int):
        self.streams, self.refs, self.seq_len, self.batch_size = streams, refs, seq_len, batch_size

    def __len__(self) -> int:
        return -(-len(self.refs) // self.batch_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        if not 0 <= index < len(self):
            raise IndexError(index)
        rows = self.refs[index * self.batch_size:(index + 1) * self.batch_size]
        length = self.seq_len
        ids = np.stack([self.streams[s][b * length:(b + 1) * length] for s, b in rows]).astype(np.int64)
        block = torch.from_numpy(ids)  # (B, seq_len)
        return {"input_ids": block, "labels": block.clone()}


def block_refs(stream_index: int, blocks: np.ndarray) -> np.ndarray:
    return np.stack([np.full(len(blocks), stream_index, dtype=np.int64), blocks.astype(np.int64)], axis=1)


def spaced(n: int, k: int) -> np.ndarray:
    """k block indices evenly spread over range(n) (all of them when n <= k): bounded, representative eval."""
    return np.arange(n) if n <= k else np.linspace(0, n - 1, k).round().astype(np.int64)


def mixed_refs(n_domain: int, replay_pool: int, share: float, seed: int) -> np.ndarray:
    """Every domain block plus enough replay blocks (sampled from the first `replay_pool`) to make `share`, shuffled.

    Shuffled once here, so each micro-batch mixes domain and replay instead of whole batches of one kind.
    """
    rng = np.random.default_rng(seed)
    refs = block_refs(DOMAIN, np.arange(n_domain))
    if share > 0 and replay_pool > 0:
        wanted = round(n_domain * share / (1 - share))
        refs = np.concatenate([refs, block_refs(REPLAY, rng.integers(0, replay_pool, wanted))])
    return refs[rng.permutation(len(refs))]


def run_cpt(base_path: str | Path, corpus_path: str | Path, cfg: AdaptConfig, out: str | Path) -> Path:
    """Validate inputs, train, and write the model/adapter artifact; returns its directory."""
    from sovforge.artifacts import open_input

    base = check_base(base_path, cfg.seq_len)
    method, warnings = resolve_method(cfg)
    corpus = open_input(corpus_path, kind="corpus")
    length, tokenizer = cfg.seq_len, base.tokenizer

    train_stream, source = corpus_stream(corpus.path, base.dir, tokenizer, "train")
    n_train = len(train_stream) // length
    if n_train == 0:
        raise TrainingError(f"corpus {corpus.path} has no training text (need at least {length} tokens, "
                            f"found {len(train_stream)})")
    val_stream, _ = corpus_stream(corpus.path, base.dir, tokenizer, "validation")
    replay = replay_stream(cfg.replay_text, tokenizer) if cfg.replay_text else np.zeros(0, dtype=np.int32)
    n_replay = len(replay) // length
    # Hold the last blocks of the replay text out of training: general perplexity is measured on those.
    held_out = min(cfg.eval_blocks, n_replay // 10) if n_replay >= 10 else 0
    replay_pool = n_replay - held_out
    if cfg.replay_share > 0 and replay_pool == 0:
        raise TrainingError(f"replay_share {cfg.replay_share} but replay_text has no {length}-token block to train on")
    streams = [train_stream, replay]
    refs = mixed_refs(n_train, replay_pool, cfg.replay_share, cfg.train.seed)
    train_batches = TokenBlocks(streams, refs, length, cfg.batch_size)
    val = TokenBlocks([val_stream], block_refs(DOMAIN, spaced(len(val_stream) // length, cfg.eval_blocks)),
                      length, cfg.batch_size) if len(val_stream) >= length else None
    general = TokenBlocks(streams, block_refs(REPLAY, np.arange(replay_pool, n_replay)), length,
                          cfg.batch_size) if held_out else None

    def scores() -> dict[str, Any]:
        device = next(model.parameters()).device  # a QLoRA model already sits on its GPU
        found = dict(evaluate_loss(model, val, device=device)) if val else {}
        if general:
            found.update({f"general_{k}": v for k, v in evaluate_loss(model, general, device=device).items()})
        return found

    model = load_for_training(base.dir, cfg, method)
    before = scores()
    key = fingerprint({"mode": "cpt", "cfg": cfg.model_dump(mode="json"), "base": base.artifact.id,
                       "corpus": corpus.id})
    work = run_dir(out, key)
    result = train(model, train_batches, cfg.train, out_dir=work, eval_batches=val)
    after = scores()
    meta = packed_meta(corpus.path) or {}
    stats = {"method_used": method, "warnings": warnings, "token_source": source,
             "packed_tokenizer": meta.get("tokenizer"), "train_tokens": int(len(train_stream)),
             "train_blocks": n_train, "replay_blocks": int((refs[:, 0] == REPLAY).sum()),
             "general_heldout_blocks": held_out, "before": before, "after": after}
    return write_result(out, method=method, model=model, tokenizer=tokenizer, result=result, work=work,
                        inputs=[base.artifact, corpus],
                        config={**cfg.model_dump(mode="json"), "base_model_path": str(base.dir.resolve())},
                        stats=stats)
