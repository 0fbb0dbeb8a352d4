"""What `sovforge evaluate` can score, and how it opens each one (always through `sovforge.model.loading`).

MODEL  a model artifact or plain local HF checkpoint (config.json + *.safetensors)
       an adapter artifact (LoRA): scored as its base + the adapter, merged in memory
       a compressed artifact whose manifest has `stats.variants: {name: relative_path}`: one model per
       variant

models = resolve_models([base_dir, adapter_dir, compressed_dir])
model, tokenizer = models[1].load()
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovforge.artifacts import Artifact, LineageError, open_input


class EvaluateError(ValueError):
    """Expected, user-facing evaluation error (bad task, bad model dir, missing data, failed gate)."""


@dataclass
class EvalModel:
    """One model under evaluation."""

    name: str
    """Display name in the report (unique within a report)."""
    artifact: Artifact
    """The artifact (or plain checkpoint) this model is; its id is what the report and serve refer to."""
    weights: Path
    """Directory with config.json + *.safetensors (for an adapter: its base)."""
    adapter: Path | None = None
    """LoRA adapter directory merged into `weights` in memory, or None."""

    @property
    def id(self) -> str:
        return self.artifact.id

    @property
    def tokenizer_dir(self) -> Path:
        # An adapter artifact carries the tokenizer it was trained with; prefer it over the base's copy.
        if self.adapter is not None and any(
            (self.adapter / f).exists() for f in ("tokenizer.json", "vocab.json")
        ):
            return self.adapter
        return self.weights

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.artifact.kind,
            "path": str(self.artifact.path),
            "classification": str(self.artifact.classification),
            "weights": str(self.weights),
            "adapter": str(self.adapter) if self.adapter else None,
        }

    def load(self, device: str = "cpu") -> tuple[Any, Any]:
        """(model in eval mode, tokenizer); an adapter is merged into its base in full precision in memory."""
        import torch

        from sovforge.model.loading import load_model, load_tokenizer

        model = load_model(self.weights, dtype=torch.float32, device=device)
        if self.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter)).merge_and_unload()
        return model.eval(), load_tokenizer(self.tokenizer_dir)


def _checked_weights(path: Path) -> Path:
    from sovforge.model.loading import ModelLoadError, model_dir

    try:
        return model_dir(path)
    except ModelLoadError as exc:
        raise EvaluateError(f"{path} is not a loadable model: {exc}") from None


def _adapter_model(artifact: Artifact, name: str) -> EvalModel:
    root = artifact.path
    if not (root / "adapter_config.json").exists():
        raise EvaluateError(f"{root} is an adapter artifact without adapter_config.json")
    base = artifact.config.get("base_model_path") or json.loads(
        (root / "adapter_config.json").read_text(encoding="utf-8")
    ).get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise EvaluateError(
            f"{root}: its base model {base!r} is not a local directory here; an adapter is scored "
            "as base + adapter, so the base must be present (or merge it: sovforge adapt merge)"
        )
    return EvalModel(name, artifact, _checked_weights(Path(base)), adapter=root)


def open_model(path: str | Path, name: str | None = None, notes: list[str] | None = None) -> list[EvalModel]:
    """The model(s) at `path`: one, or one per variant of a compress output. Clear errors for anything else;
    variants that cannot be scored here are appended to `notes` (or raise when notes is None)."""
    root = Path(path)
    name = name or root.name
    if not root.is_dir():
        raise EvaluateError(f"{root} is not a loadable model: no such directory")
    try:
        artifact = open_input(root)
    except LineageError as exc:
        raise EvaluateError(f"{root} is not a loadable model: {exc}") from None
    if artifact.kind == "adapter":
        return [_adapter_model(artifact, name)]
    variants = artifact.stats.get("variants")
    if isinstance(variants, dict) and variants and not (root / "config.json").exists():
        models = []
        for variant, rel in variants.items():
            target = (root / rel).resolve()
            if not target.is_relative_to(root.resolve()):
                raise EvaluateError(f"{root}: variant {variant} points outside the artifact ({rel})")
            if any(target.glob("*.gguf")) and not any(target.glob("*.safetensors")):
                message = (
                    f"{name}/{variant}: a GGUF file; the hf backend scores safetensors checkpoints only — "
                    "serve it with llama.cpp and evaluate it with --endpoint"
                )
                if notes is None:
                    raise EvaluateError(message)
                notes.append(message)
                continue
            models.extend(open_model(target, f"{name}/{variant}", notes))
        return models
    if any(root.glob("*.gguf")) and not any(root.glob("*.safetensors")):
        raise EvaluateError(
            f"{root}: a GGUF file; the hf backend scores safetensors checkpoints only — serve it "
            "with llama.cpp and evaluate it with --endpoint"
        )
    if artifact.kind not in ("model", "compressed"):
        raise EvaluateError(f"{root} is not a loadable model: it is a {artifact.kind} artifact")
    return [EvalModel(name, artifact, _checked_weights(root))]


def resolve_models(paths: list[Path], names: list[str] | None = None) -> tuple[list[EvalModel], list[str]]:
    """(models, notes): every path opened; names default to directory names, made unique with `#2`, `#3`."""
    models: list[EvalModel] = []
    notes: list[str] = []
    for i, path in enumerate(paths):
        models.extend(open_model(path, names[i] if names else None, notes))
    seen: dict[str, int] = {}
    for model in models:
        seen[model.name] = seen.get(model.name, 0) + 1
        if seen[model.name] > 1:
            model.name = f"{model.name}#{seen[model.name]}"
    return models, notes
