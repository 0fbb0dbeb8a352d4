"""What the CPT and SFT recipes share: checking the base, full / LoRA / QLoRA set-up, writing the artifact.

    base = check_base(base_path, cfg.seq_len)            # no model / no tokenizer / seq_len too long: clear errors
    method, warnings = resolve_method(cfg)                # QLoRA needs CUDA: fail (or fall back) before loading
    model = load_for_training(base.dir, cfg, method)      # fp32 full / LoRA via PEFT / NF4 4-bit base + LoRA
    work = run_dir(out, fingerprint)                      # fixed beside OUT, so a rerun resumes its checkpoints
    write_result(out, model=..., tokenizer=..., result=..., work=work, ...)

Every check here runs before any weights load, so bad input costs seconds, not a training run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovforge.adapt.config import AdaptConfig
from sovforge.adapt.trainer import TrainingError, TrainResult, process_state

RUN_FILE = "run.json"


@dataclass
class Base:
    """A validated base model: its artifact (for lineage), directory, tokenizer and config.json."""

    artifact: Any
    dir: Path
    tokenizer: Any
    config: dict[str, Any]


def check_base(base_path: str | Path, seq_len: int) -> Base:
    """Open the base model artifact (or plain local HF checkpoint) and check it can be trained at `seq_len`."""
    from sovforge.artifacts import open_input
    from sovforge.model.loading import load_tokenizer, model_dir

    artifact = open_input(base_path, kind="model")
    base_dir = model_dir(artifact.path)
    tokenizer = load_tokenizer(base_dir)  # ModelLoadError "no tokenizer" when the files are missing
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise TrainingError(f"{base_dir} is a quantised checkpoint ({method}); adapt the full-precision base "
                            "(QLoRA quantises it itself)")
    max_len = config.get("max_position_embeddings")
    if max_len and seq_len > max_len:
        raise TrainingError(f"seq_len {seq_len} exceeds the model's max_position_embeddings {max_len} ({base_dir})")
    return Base(artifact, base_dir, tokenizer, config)


def resolve_method(cfg: AdaptConfig) -> tuple[str, list[str]]:
    """The method that will really run, and warnings for the manifest; QLoRA is checked before anything loads."""
    if cfg.method != "qlora":
        return cfg.method, []
    import torch

    if not torch.cuda.is_available():
        if cfg.qlora_cpu_fallback:
            warning = ("method qlora requested but this machine has no CUDA GPU (bitsandbytes 4-bit needs one): "
                       "trained plain LoRA on the full-precision base instead (qlora_cpu_fallback)")
            print(f"warning: {warning}", file=sys.stderr)
            return "lora", [warning]
        raise TrainingError("method qlora needs a CUDA GPU (bitsandbytes 4-bit NF4) and this machine has none; "
                            "use --method lora, or --qlora-cpu-fallback to train plain LoRA and record that")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainingError("method qlora needs bitsandbytes: pip install 'sovforge[gpu]' on the GPU machine") from None
    return "qlora", []


def lora_targets(cfg: AdaptConfig, base_dir: Path) -> list[str]:
    from sovforge.model.loading import ARCHITECTURES, model_type

    targets = cfg.target_modules or ARCHITECTURES.get(model_type(base_dir))
    if not targets:
        raise TrainingError(f"no default LoRA target modules for model type {model_type(base_dir)!r}; "
                            "set target_modules")
    return list(targets)


def wrap_lora(model: Any, cfg: AdaptConfig, base_dir: Path) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=lora_targets(cfg, base_dir), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def load_for_training(base_dir: Path, cfg: AdaptConfig, method: str) -> Any:
    """The model to train: all weights (`full`), a LoRA-wrapped fp32 base, or LoRA on an NF4 4-bit base (QLoRA)."""
    import torch

    from sovforge.model.loading import load_model

    torch.manual_seed(cfg.train.seed)  # LoRA's A matrices are drawn at wrap time: the same seed, the same run
    if method == "full":
        return load_model(base_dir)
    if method == "lora":
        return wrap_lora(load_model(base_dir), cfg, base_dir)
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
    # 4-bit weights cannot be moved after loading: place each rank's copy on its own GPU up front.
    model = load_model(base_dir, dtype=compute, quantization_config=quant,
                       device_map={"": process_state().local_process_index})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    return wrap_lora(model, cfg, base_dir)


def fingerprint(payload: dict[str, Any]) -> str:
    from sovforge.artifacts import canonical_json

    return hashlib.sha256(canonical_json(payload)).hexdigest()


def run_dir(out: str | Path, key: str) -> Path:
    """`.OUT.run` beside OUT: the same command resumes its checkpoints; a changed config/input starts afresh."""
    out = Path(out)
    work = out.parent / f".{out.name}.run"
    marker = work / RUN_FILE
    if work.exists() and (not marker.exists() or json.loads(marker.read_text()).get("key") != key):
        state = process_state()
        state.wait_for_everyone()  # every rank has read the old marker before rank 0 deletes it
        if state.is_main_process:
            print(f"note: {work} holds checkpoints of a different run; starting afresh", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)
        state.wait_for_everyone()
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"key": key}))
    return work


def write_result(out: str | Path, *, method: str, model: Any, tokenizer: Any, result: TrainResult, work: Path,
                 inputs: list[Any], config: dict[str, Any], stats: dict[str, Any],
                 classification: Any = None) -> Path:
    """Rank 0 writes the adapter (LoRA/QLoRA) or model (full) artifact, signed; the run directory is then removed."""
    from sovforge.artifacts import build_artifact

    out = Path(out)
    if not process_state().is_main_process:  # under accelerate launch only rank 0 writes the artifact
        return out
    kind = "model" if method == "full" else "adapter"
    with build_artifact(out, kind=kind) as staging:
        if result.state_dict is not None:  # FSDP/DeepSpeed: the gathered full weights
            model.save_pretrained(staging.path, state_dict=result.state_dict, safe_serialization=True)
        else:
            model.save_pretrained(staging.path, safe_serialization=True)
        tokenizer.save_pretrained(staging.path)
        timings = []
        if result.metrics_path is not None and result.metrics_path.exists():
            timings = _split_metrics(result.metrics_path, staging.path / "metrics.jsonl")
        staging.finish(inputs=inputs, config=config, classification=classification,
                       stats={**result.as_stats(), **stats, "step_timings": timings})
    shutil.rmtree(work, ignore_errors=True)
    return out


TIMING_FIELDS = ("tokens_per_s", "peak_memory_mb")


def _split_metrics(source: Path, dest: Path) -> list[dict[str, Any]]:
    """Copy the run's metrics into the artifact without its timings, which go to the manifest instead.

    Loss, learning rate and gradient norm are reproducible (same seed, same command); tokens/s and peak memory are
    not. An artifact's id is the hash of its files, so keeping timings out of them lets the same training run give
    the same id on any machine or engine (`sovforge jobs` relies on it).
    """
    timings = []
    with open(source, encoding="utf-8") as src, open(dest, "w", encoding="utf-8") as out:
        for line in src:
            if not line.strip():
                continue
            record = json.loads(line)
            timed = {k: record.pop(k) for k in TIMING_FIELDS if k in record}
            if timed:
                timings.append({"step": record.get("step"), **timed})
            out.write(json.dumps(record) + "\n")
    return timings
