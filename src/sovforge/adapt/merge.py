"""Merge a LoRA adapter into its base in full precision: `sovforge adapt merge --adapter A --out OUT [--base B]`.

The result is a standard HF checkpoint (kind "model"), loadable by AutoModelForCausalLM; a quantised base is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from sovforge.adapt.trainer import TrainingError


def merge_adapter(adapter_path: str | Path, out: str | Path, base_path: str | Path | None = None) -> Path:
    import torch
    from peft import PeftModel

    from sovforge.artifacts import build_artifact, open_input
    from sovforge.model.loading import load_model, load_tokenizer, model_dir

    adapter = open_input(adapter_path, kind="adapter")
    base_path = base_path or adapter.config.get("base_model_path")
    if not base_path:
        raise TrainingError(f"{adapter.path}: manifest names no base_model_path; pass --base")
    base = open_input(base_path, kind="model")
    base_dir = model_dir(base.path)
    config = json.loads((base_dir / "config.json").read_text())
    if config.get("quantization_config"):
        raise TrainingError(f"{base_dir} is quantised ({config['quantization_config'].get('quant_method', '?')}); "
                            "merge into the full-precision base instead")
    model = PeftModel.from_pretrained(load_model(base_dir, dtype=torch.float32), str(adapter.path))
    merged = model.merge_and_unload()
    with build_artifact(out, kind="model") as staging:
        merged.save_pretrained(staging.path, safe_serialization=True)
        load_tokenizer(adapter.path if (Path(adapter.path) / "tokenizer.json").exists() else base_dir
                       ).save_pretrained(staging.path)
        staging.finish(inputs=[base, adapter], config={"merged_from": adapter.id, "base_model_path": str(base_dir)},
                       stats={"merged": True})
    return Path(out)
