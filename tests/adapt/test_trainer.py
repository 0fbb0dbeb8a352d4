"""Tests of the shared training loop: `.venv/bin/python -m pytest -q tests/adapt -p no:cacheprovider`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sovforge.adapt.config import TrainConfig
from sovforge.adapt.trainer import CRASH_ENV, TrainingError, checkpoints, lr_lambda, train

def _model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _batches(tiny_model: Path, n: int = 6, seq: int = 32) -> list[dict[str, torch.Tensor]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = " ".join(f"제{i}조 군사기밀 보호 규정 field manual section {i}." for i in range(200))
    ids = torch.tensor(tok(text)["input_ids"][: n * 2 * seq]).view(n, 2, seq)
    return [{"input_ids": b, "labels": b.clone()} for b in ids]


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=6, learning_rate=3e-3, warmup_steps=1, progress=False, checkpoint_every=2, seed=1)
    return TrainConfig(**{**base, **kw})


def test_loss_decreases_and_metrics_and_checkpoints(tiny_model: Path, tmp_path: Path):
    batches = _batches(tiny_model)
    model = _model(tiny_model)
    result = train(model, batches, _cfg(max_steps=12, grad_accum=2), out_dir=tmp_path, eval_batches=batches[:2])
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 13))
    assert {"loss", "lr", "tokens_per_s", "peak_memory_mb", "grad_norm"} <= set(lines[0])
    assert lines[-1]["loss"] < lines[0]["loss"] - 0.3
    assert "val_ppl" in lines[-1] and result.eval["val_loss"] == pytest.approx(lines[-1]["val_loss"])
    assert result.steps == 12 and result.tokens == 12 * 2 * 2 * 32
    kept = checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step-0000010", "step-0000012"]  # keep_checkpoints=2
    assert sorted(f.name for f in kept[-1].iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]


def test_loss_fn_hook_is_used(tiny_model: Path, tmp_path: Path):
    calls = []

    def loss_fn(model, batch):
        calls.append(batch["input_ids"].shape)
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                 batch["input_ids"][:, 1:].reshape(-1))

    result = train(_model(tiny_model), _batches(tiny_model), _cfg(max_steps=3), out_dir=tmp_path, loss_fn=loss_fn)
    assert len(calls) == 3 and result.steps == 3 and result.final_loss > 0


def test_kill_and_resume_matches_uninterrupted(tiny_model: Path, corpus: Path, tmp_path: Path, sovforge_home: Path):
    """`sovforge adapt cpt` SIGKILLed after step 4; rerunning the same command resumes from its step-4 checkpoint
    (weights, AdamW moments, scheduler, RNG, data position) and ends on the uninterrupted run's loss."""
    from typer.testing import CliRunner

    from sovforge.artifacts import load_artifact
    from sovforge.cli import app

    def command(out: Path) -> list[str]:
        return ["adapt", "cpt", "--base", str(tiny_model), "--corpus", str(corpus), "--out", str(out),
                "--seq-len", "32", "--batch-size", "2", "--max-steps", "6", "--checkpoint-every", "2",
                "--learning-rate", "0.003", "--warmup-steps", "1", "--lora-r", "4", "--seed", "1"]

    runner = CliRunner()
    straight = runner.invoke(app, command(tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    reference = load_artifact(tmp_path / "straight").stats

    out = tmp_path / "killed"
    env = {**os.environ, CRASH_ENV: "4", "OMP_NUM_THREADS": "1", "SOVFORGE_HOME": str(sovforge_home)}
    proc = subprocess.run([sys.executable, "-m", "sovforge.cli", *command(out)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILLed right after step 4's checkpoint
    run_dir = tmp_path / ".killed.run"
    assert [p.name for p in checkpoints(run_dir)] == ["step-0000002", "step-0000004"] and not out.exists()
    assert sorted(f.name for f in checkpoints(run_dir)[-1].iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]

    resumed = runner.invoke(app, command(out))  # the very same command
    assert resumed.exit_code == 0, resumed.output
    stats = load_artifact(out).stats
    assert stats["resumed_from"] == 4 and stats["steps"] == 6 and reference["resumed_from"] is None
    assert stats["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-5, abs=1e-6)
    assert stats["after"]["val_loss"] == pytest.approx(reference["after"]["val_loss"], rel=1e-5)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the metrics log continues across the kill


def test_changed_command_does_not_resume_foreign_checkpoints(tiny_model: Path, corpus: Path, tmp_path: Path):
    from sovforge.adapt.config import AdaptConfig
    from sovforge.adapt.methods import run_dir

    work = run_dir(tmp_path / "out", "key-a")
    (work / "checkpoints" / "step-0000002").mkdir(parents=True)
    (work / "checkpoints" / "step-0000002" / "state.json").write_text("{}")
    assert run_dir(tmp_path / "out", "key-a") == work and checkpoints(work)  # same run: kept for resuming
    assert run_dir(tmp_path / "out", "key-b") == work and not checkpoints(work)  # another config: fresh start
    assert AdaptConfig().train.resume is True


def test_gradient_checkpointing_with_lora_gives_the_same_step(tiny_model: Path, tmp_path: Path):
    """Recomputing activations changes memory, not maths: same first-step loss and grad norm, frozen embeddings."""
    from peft import LoraConfig, get_peft_model

    def run(checkpointing: bool, out: Path) -> dict:
        torch.manual_seed(0)
        model = get_peft_model(_model(tiny_model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        train(model, _batches(tiny_model), _cfg(max_steps=1, gradient_checkpointing=checkpointing), out_dir=out)
        assert model.base_model.model.is_gradient_checkpointing == checkpointing
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])

    plain, recomputed = run(False, tmp_path / "a"), run(True, tmp_path / "b")
    assert recomputed["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert recomputed["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-4) and plain["grad_norm"] > 0


def test_bad_inputs_fail_before_training(tiny_model: Path, tmp_path: Path):
    with pytest.raises(TrainingError, match="empty"):
        train(_model(tiny_model), [], _cfg(), out_dir=tmp_path)
    frozen = _model(tiny_model).requires_grad_(False)
    with pytest.raises(TrainingError, match="no trainable"):
        train(frozen, _batches(tiny_model), _cfg(), out_dir=tmp_path)


def test_schedule_warmup_then_decay():
    f = lr_lambda(TrainConfig(max_steps=10, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0) and f(10) == pytest.approx(0.1)
    assert all(f(i) >= f(i + 1) for i in range(2, 10))
    lin = lr_lambda(TrainConfig(max_steps=10, schedule="linear", min_lr_ratio=0.0))
    assert lin(5) == pytest.approx(0.5)
