"""Config of the `adapt` stage: `sovforge adapt ...` / recipe section `adapt:` (training-loop settings in `TrainConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from sovforge._config_base import StrictModel
from sovforge.classification import parse_level


class TrainConfig(StrictModel):
    """Settings of the one training loop (`sovforge.adapt.trainer.train`), shared by CPT, SFT and distillation."""

    max_steps: int = Field(100, ge=1)
    """Optimizer steps to run (each step = `grad_accum` micro-batches)."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate of AdamW."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW beta1/beta2."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warm-up (to `min_lr_ratio` x peak at `max_steps`)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up steps from 0 to the peak learning rate."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final learning rate as a fraction of the peak (cosine/linear)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches whose gradients are summed before one optimizer step."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this (None = no clipping)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast precision; `auto` = bf16 on a GPU that has it, fp16 on an older GPU, fp32 on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""
    checkpoint_every: int = Field(0, ge=0)
    """Write a resumable checkpoint every N optimizer steps (0 = only at the end)."""
    keep_checkpoints: int = Field(2, ge=1)
    """Keep only the newest K checkpoints."""
    resume: bool = True
    """Continue from the newest checkpoint in the output directory when one exists."""
    eval_every: int = Field(0, ge=0)
    """Validation loss/perplexity every N optimizer steps (0 = only at the end, when validation data is given)."""
    log_every: int = Field(1, ge=1)
    """Write a metrics JSONL line every N optimizer steps."""
    progress: bool = True
    """Show a tqdm progress bar (main process only)."""
    seed: int = 0
    """Seed of data order and dropout; the same seed gives the same run."""


class AdaptConfig(StrictModel):
    """`sovforge adapt`: continued pre-training / SFT of the base model on the corpus."""

    mode: Literal["cpt", "sft"] = "cpt"
    """`cpt` = continued pre-training on the corpus text; `sft` = supervised fine-tuning on chat/instruction JSONL."""
    method: Literal["full", "lora", "qlora"] = "lora"
    """Train all weights (`full`), a LoRA adapter, or a LoRA adapter on a 4-bit base (`qlora`, CUDA only)."""
    qlora_cpu_fallback: bool = False
    """With `method: qlora` on a machine without CUDA, train plain LoRA instead of failing (recorded in the manifest)."""
    seq_len: int = Field(512, ge=8)
    """Tokens per training sequence (must not exceed the model's max_position_embeddings)."""
    batch_size: int = Field(8, ge=1)
    """Sequences per micro-batch."""
    eval_blocks: int = Field(64, ge=1)
    """At most this many validation sequences (evenly spaced over the validation split) are scored per evaluation."""
    replay_text: list[Path] = Field(default_factory=list)
    """Local general-text files/directories (.txt/.md) mixed into CPT so general ability is kept (no download)."""
    replay_share: float = Field(0.0, ge=0, lt=1)
    """Fraction of CPT training blocks drawn from `replay_text` (0 = domain only)."""
    sft_data: list[Path] = Field(default_factory=list)
    """SFT JSONL files: chat rows `{"messages": [{"role", "content"}, ...]}` or `{"instruction", "input", "output"}`."""
    sft_from_corpus: bool = False
    """In a recipe with `mode: sft`: also generate rows from the ingest corpus (statute articles, FM paragraphs)."""
    sft_packing: bool = False
    """Pack several SFT examples into each sequence; attention stays within each example (position_ids restart)."""
    sft_val_share: float = Field(0.05, ge=0, lt=1)
    """Share of SFT rows held out (chosen by a hash of the row, so stable across runs) for validation loss."""
    data_max_classification: str = "UNCLASSIFIED"
    """Highest marking an SFT row may carry; a row marked above it is refused, naming its file and line."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Modules that get LoRA; None = the default of the architecture (`sovforge.model.loading.ARCHITECTURES`)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training-loop settings."""

    @field_validator("data_max_classification")
    @classmethod
    def _level(cls, value: str) -> str:
        return str(parse_level(value))
