"""Config of the `base` stage: a tokenizer and a small Llama-architecture model built from local text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from sovforge._config_base import StrictModel


class BaseConfig(StrictModel):
    """`sovforge base init`: train a byte-level BPE tokenizer and create (optionally pre-train) a small model.

    Alternatively point `path` at any local HF checkpoint (Llama, Qwen2, Mistral, A.X) to use it as the base.
    """

    path: Path | None = None
    """An existing local HF checkpoint to use as the base instead of building one (nothing is downloaded)."""
    classification: str = "UNCLASSIFIED"
    """Declared classification of an external base model given by `path` (a public model is UNCLASSIFIED)."""
    text: list[Path] = Field(default_factory=list)
    """Files or directories of .txt/.md/.html/.jsonl text to train the tokenizer (and pre-train) on."""
    preset: Literal["tiny", "small"] = "tiny"
    """Model size: `tiny` = 2 layers, hidden 64 (tests); `small` ≈ 16M parameters (the demo)."""
    vocab_size: int = Field(4096, ge=300, le=262144)
    """Byte-level BPE vocabulary size, special tokens included."""
    max_position_embeddings: int = Field(1024, ge=64)
    """Longest sequence the model accepts."""
    pretrain_steps: int = Field(0, ge=0)
    """Optimizer steps of causal-LM pre-training on `text` (0 = random init)."""
    seq_len: int = Field(256, ge=16)
    """Sequence length of pre-training batches."""
    batch_size: int = Field(8, ge=1)
    """Sequences per pre-training step."""
    learning_rate: float = Field(1e-3, gt=0)
    """Peak learning rate of pre-training (cosine decay after 10% warm-up)."""
    seed: int = 0
    """Seed for tokenizer sampling, initialisation and data order."""
