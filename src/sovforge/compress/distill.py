"""Logit knowledge distillation, teacher → smaller student: one `distill` variant of `sovforge compress`.

    stats = distill(teacher_dir, student_dir_or_None, cfg, corpus_dir, out_dir, work_dir, dtype="bfloat16")

loss = kd_weight · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + ce_weight · CE(z_s, next token), averaged over
token positions (forward KL: the student covers the teacher's distribution; T² keeps the gradient scale of the soft
term independent of T, Hinton et al. 2015). `kd_weight: 0, ce_weight: 1` is the same student trained without a
teacher — the baseline distillation is judged against. Training is the adapt stage's loop
(`sovforge.adapt.trainer.train` with `loss_fn=`), so checkpoints, resume and metrics are the same as CPT's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sovforge.compress.config import CompressError, DistillConfig


def kd_loss(teacher: Any | None, *, temperature: float, kd_weight: float, ce_weight: float):
    """`loss_fn(student, batch)` for the trainer; the teacher runs frozen, without gradients."""
    import torch
    import torch.nn.functional as F

    def loss_fn(student: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]  # (B, T)
        logits = student(input_ids=ids).logits[:, :-1].float()  # (B, T-1, V): predictions of tokens 1..T-1
        total = logits.new_zeros(())
        if ce_weight:
            total = total + ce_weight * F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        if kd_weight:
            with torch.no_grad():
                teacher_logits = teacher(input_ids=ids.to(teacher.device)).logits[:, :-1].float().to(logits.device)
            log_student = F.log_softmax(logits / temperature, dim=-1)
            log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
            # KL(teacher ‖ student) per position, summed over the vocabulary, mean over positions
            kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1).mean()
            total = total + kd_weight * temperature ** 2 * kl
        return total

    return loss_fn


def fresh_student(teacher_config: dict[str, Any], overrides: dict[str, int], seed: int, variant: str) -> Any:
    """A randomly initialised student of the teacher's architecture with smaller dimensions (same vocabulary)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if "vocab_size" in overrides and overrides["vocab_size"] != teacher_config.get("vocab_size"):
        raise CompressError(f"variant {variant}: student_config may not change vocab_size (the student shares the "
                            "teacher's tokenizer)")
    unknown = [k for k in overrides if k not in teacher_config]
    if unknown:
        raise CompressError(f"variant {variant}: student_config keys {unknown} are not in the teacher's config "
                            f"(e.g. num_hidden_layers, intermediate_size, hidden_size)")
    config = {k: v for k, v in teacher_config.items() if k not in ("_name_or_path", "quantization_config")}
    config.update(overrides)
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = config["layer_types"][: config["num_hidden_layers"]]
    model_type = config.pop("model_type")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config), dtype=torch.float32)


def distill(teacher_dir: Path, student_dir: Path | None, cfg: DistillConfig, corpus_dir: Path, out_dir: Path,
            work_dir: Path, *, dtype: str, variant: str = "distill") -> dict[str, Any]:
    """Train the student on the corpus train split against the teacher; save it (HF layout) to `out_dir`."""
    import torch

    import numpy as np

    from sovforge.adapt.cpt import TokenBlocks, block_refs
    from sovforge.adapt.trainer import evaluate_loss, train
    from sovforge.compress.data import split_stream
    from sovforge.model.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(teacher_dir)
    teacher_config = json.loads((teacher_dir / "config.json").read_text(encoding="utf-8"))
    if student_dir is not None:
        student = load_model(student_dir)
        if student.config.vocab_size != teacher_config["vocab_size"]:
            raise CompressError(f"variant {variant}: student vocabulary {student.config.vocab_size} differs from the "
                                f"teacher's {teacher_config['vocab_size']}; logit distillation needs the same tokenizer")
    else:
        student = fresh_student(teacher_config, cfg.student_config or {}, cfg.train.seed, variant)
    max_len = teacher_config.get("max_position_embeddings")
    if max_len and cfg.seq_len > max_len:
        raise CompressError(f"variant {variant}: distill.seq_len {cfg.seq_len} exceeds max_position_embeddings {max_len}")
    train_stream = split_stream(corpus_dir, teacher_dir, tokenizer, "train")
    n_train = len(train_stream) // cfg.seq_len
    if n_train == 0:
        raise CompressError(f"variant {variant}: the corpus train split has no {cfg.seq_len}-token block to train on")
    batches = TokenBlocks([train_stream], block_refs(0, np.arange(n_train)), cfg.seq_len, cfg.batch_size)
    val_stream = split_stream(corpus_dir, teacher_dir, tokenizer, "validation")
    n_val = min(64, len(val_stream) // cfg.seq_len)  # at most 64 validation blocks per evaluation
    val = TokenBlocks([val_stream], block_refs(0, np.arange(n_val)), cfg.seq_len, cfg.batch_size) if n_val else None

    teacher = None
    if cfg.kd_weight:
        teacher = load_model(teacher_dir).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    loss_fn = kd_loss(teacher, temperature=cfg.temperature, kd_weight=cfg.kd_weight, ce_weight=cfg.ce_weight)
    before = evaluate_loss(student, val) if val else {}
    result = train(student, batches, cfg.train, out_dir=work_dir, loss_fn=loss_fn,
                   eval_fn=(lambda m: evaluate_loss(m, val)) if val else None)  # eval = plain next-token CE/ppl
    after = evaluate_loss(student, val) if val else {}
    student.to(getattr(torch, dtype)).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    shutil.copy(work_dir / "metrics.jsonl", out_dir / "metrics.jsonl")
    return {**result.as_stats(), "before": before, "after": after, "train_blocks": n_train,
            "student_parameters": _count(student), "teacher_parameters": _count(teacher) or None,
            "loss": {"kd_weight": cfg.kd_weight, "ce_weight": cfg.ce_weight, "temperature": cfg.temperature}}


def _count(model: Any | None) -> int:
    return sum(p.numel() for p in model.parameters()) if model is not None else 0
