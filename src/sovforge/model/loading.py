"""Safe local loading of models and tokenizers — the only way sovforge opens a checkpoint.

Rules (air-gapped, supply-chain safe):
* a local directory only; nothing is ever fetched (`local_files_only=True`, offline env set by the CLI);
* `trust_remote_code` is never enabled, and a config that asks for custom code (`auto_map`) is refused;
* weights must be safetensors: pickle-based `*.bin`/`*.pt` checkpoints are refused, not loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARCHITECTURES = {
    # model_type → default LoRA target modules; A.X 4.0 Light is qwen2, A.X 3.1 Light is llama.
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class ModelLoadError(ValueError):
    """A directory that cannot be loaded safely as a model; the message says why and what to do."""


def model_dir(path: str | Path) -> Path:
    """Validate a local checkpoint directory (or a model artifact) and return it."""
    root = Path(path)
    if not root.is_dir():
        raise ModelLoadError(f"{root}: no such model directory (sovforge loads models from local paths only)")
    config_path = root / "config.json"
    if not config_path.exists():
        raise ModelLoadError(f"{root}: not a model directory (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_path}: unreadable ({exc})") from None
    if "auto_map" in config:
        raise ModelLoadError(
            f"{root}: config.json asks for custom model code (auto_map); sovforge never runs code shipped "
            "with a model (trust_remote_code is disabled)"
        )
    weights = list(root.glob("*.safetensors"))
    pickled = [p.name for p in root.iterdir() if p.suffix in _PICKLE_SUFFIXES and p.name != "training_args.bin"]
    if not weights:
        detail = f" (found pickle weights {pickled}: convert them to safetensors on a trusted machine)" if pickled else ""
        raise ModelLoadError(f"{root}: no *.safetensors weights{detail}")
    return root


def tokenizer_dir(path: str | Path) -> Path:
    root = Path(path)
    if not any((root / name).exists() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ModelLoadError(
            f"{root}: no tokenizer (tokenizer.json / tokenizer.model / vocab.json); copy the base model's "
            "tokenizer files into it"
        )
    return root


def model_type(path: str | Path) -> str:
    return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type", "unknown")


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    root = tokenizer_dir(path)
    return AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)


def load_model(path: str | Path, *, dtype: Any = None, device: str | None = None, **kwargs: Any) -> Any:
    """`AutoModelForCausalLM` from a validated local directory; fp32 on CPU unless `dtype` is given."""
    import torch
    from transformers import AutoModelForCausalLM

    root = model_dir(path)
    model = AutoModelForCausalLM.from_pretrained(
        root, local_files_only=True, trust_remote_code=False, use_safetensors=True,
        dtype=dtype if dtype is not None else torch.float32, **kwargs,
    )
    if device is not None:
        model = model.to(device)
    return model


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
