"""Structured pruning into a genuinely smaller dense model: one `structured` variant of `sovforge compress`.

    plan = prune_plan(config, StructuredConfig(drop_layers=2, mlp_keep=0.75))   # shapes only, before any work
    stats = structured_prune(parent_dir, cfg, calibration.blocks, out_dir, dtype="bfloat16")

Depth: each decoder block's importance is 1 - cos(h_in, h_out), the mean over calibration tokens of how much the
block turns its residual stream (ShortGPT's Block Influence); the `drop_layers` least important blocks go.
Width: each MLP intermediate channel's importance is the mean |activation| entering `down_proj`; every kept block
keeps its `mlp_keep` most active channels (gate/up rows, down columns). The config is rewritten
(`num_hidden_layers`, `intermediate_size`, `layer_types`) and the weights loaded strictly into a fresh model of
that config, so the result is a plain dense checkpoint `AutoModelForCausalLM` loads — no masks, no custom code.
Unstructured and 2:4 sparsity are llm-compressor modifiers (`sovforge.compress.quantize`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovforge.compress.config import CompressError, StructuredConfig

# Decoder layouts this module knows: model.layers[i].{self_attn, mlp.{gate,up,down}_proj}.
SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")
_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


@dataclass
class PrunePlan:
    layers: int
    drop_layers: int
    intermediate: int
    kept_intermediate: int


def prune_plan(config: dict[str, Any], cfg: StructuredConfig, variant: str = "structured") -> PrunePlan:
    """Check the config can be pruned as asked and return the resulting shape (no weights touched)."""
    arch = config.get("model_type")
    if arch not in SUPPORTED:
        raise CompressError(f"variant {variant}: structured pruning supports {list(SUPPORTED)} decoder layouts, "
                            f"not model_type {arch!r}")
    layers, intermediate = int(config["num_hidden_layers"]), int(config["intermediate_size"])
    candidates = layers - cfg.keep_first - cfg.keep_last
    if cfg.drop_layers > max(candidates, 0):
        raise CompressError(f"variant {variant}: drop_layers {cfg.drop_layers} but only {max(candidates, 0)} of "
                            f"the model's {layers} blocks may be dropped (keep_first {cfg.keep_first}, "
                            f"keep_last {cfg.keep_last})")
    kept = intermediate
    if cfg.mlp_keep < 1:
        kept = int(intermediate * cfg.mlp_keep) // cfg.mlp_multiple * cfg.mlp_multiple
        if kept < cfg.mlp_multiple:
            raise CompressError(f"variant {variant}: mlp_keep {cfg.mlp_keep} of {intermediate} channels rounds "
                                f"to {kept} (multiple of {cfg.mlp_multiple}); keep more or lower mlp_multiple")
    return PrunePlan(layers=layers, drop_layers=cfg.drop_layers, intermediate=intermediate, kept_intermediate=kept)


def pruned_config(config: dict[str, Any], kept_layers: list[int], intermediate: int) -> dict[str, Any]:
    """The HF config of the smaller model: fewer blocks, narrower MLP, per-layer lists filtered to the kept blocks."""
    new = dict(config)
    new["num_hidden_layers"] = len(kept_layers)
    new["intermediate_size"] = intermediate
    if isinstance(config.get("layer_types"), list):
        new["layer_types"] = [config["layer_types"][i] for i in kept_layers]
    if "max_window_layers" in config:  # qwen2: blocks >= this use sliding window; keep the same blocks doing so
        new["max_window_layers"] = sum(1 for i in kept_layers if i < config["max_window_layers"])
    return new


def importance(model: Any, blocks: Any, batch_size: int = 4) -> tuple[list[float], list[Any]]:
    """(block importance per layer, mean |down_proj input| per layer) over the calibration blocks (fp32, no grad)."""
    import torch

    layers = model.model.layers
    block_sum = [0.0] * len(layers)
    channel_sum = [torch.zeros(layer.mlp.down_proj.in_features) for layer in layers]
    tokens = 0
    hooks = []

    def on_block(index: int):
        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            h_in = args[0] if args else kwargs["hidden_states"]  # (B, T, H)
            h_out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)  # (B, T)
            block_sum[index] += float((1 - cos).sum())
        return hook

    def on_down(index: int):
        def hook(module: Any, args: tuple) -> None:
            channel_sum[index] += args[0].detach().float().abs().sum(dim=(0, 1)).cpu()  # (I,)
        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(on_block(i), with_kwargs=True))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(on_down(i)))
    model.eval()
    try:
        with torch.no_grad():
            for batch in blocks.split(batch_size):
                model(input_ids=batch, use_cache=False)
                tokens += batch.numel()
    finally:
        for hook in hooks:
            hook.remove()
    return [s / tokens for s in block_sum], [c / tokens for c in channel_sum]


def pruned_state(state: dict[str, Any], kept_layers: list[int], channels: dict[int, Any]) -> dict[str, Any]:
    """Weights of the smaller model: dropped blocks removed, kept blocks renumbered, MLP rows/columns selected."""
    new: dict[str, Any] = {}
    position = {old: new_index for new_index, old in enumerate(kept_layers)}
    for key, tensor in state.items():
        match = _LAYER_KEY.match(key)
        if not match:
            new[key] = tensor
            continue
        old, rest = int(match.group(1)), match.group(2)
        if old not in position:
            continue
        keep = channels.get(old)
        if keep is not None and rest.startswith(("mlp.gate_proj.", "mlp.up_proj.")):
            tensor = tensor[keep]  # (I, H) rows / (I,) bias → kept channels
        elif keep is not None and rest == "mlp.down_proj.weight":
            tensor = tensor[:, keep]  # (H, I) columns
        new[f"model.layers.{position[old]}.{rest}"] = tensor.contiguous()
    return new


def structured_prune(parent_dir: Path, cfg: StructuredConfig, blocks: Any, out_dir: Path, *, dtype: str,
                     variant: str = "structured") -> dict[str, Any]:
    """Score blocks and channels on `blocks`, write the smaller dense checkpoint to `out_dir`; return its stats."""
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sovforge.model.loading import load_model, load_tokenizer

    config = json.loads((parent_dir / "config.json").read_text(encoding="utf-8"))
    plan = prune_plan(config, cfg, variant)
    model = load_model(parent_dir)
    block_scores, channel_scores = importance(model, blocks)
    candidates = list(range(cfg.keep_first, plan.layers - cfg.keep_last))
    dropped = sorted(sorted(candidates, key=lambda i: block_scores[i])[: cfg.drop_layers])
    kept_layers = [i for i in range(plan.layers) if i not in dropped]
    channels: dict[int, Any] = {}
    if plan.kept_intermediate < plan.intermediate:
        for i in kept_layers:  # top channels by activation, in their original order
            channels[i] = torch.topk(channel_scores[i], plan.kept_intermediate).indices.sort().values
    state = pruned_state(model.state_dict(), kept_layers, channels)
    new_config = pruned_config(config, kept_layers, plan.kept_intermediate)
    for stale in ("_name_or_path", "quantization_config"):
        new_config.pop(stale, None)
    (out_dir / "config.json").write_text(json.dumps(new_config, indent=2), encoding="utf-8")
    small = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out_dir), dtype=torch.float32)
    missing, unexpected = small.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and new_config.get("tie_word_embeddings"))]
    if missing or unexpected:  # a layout we do not understand: never save a half-initialised model
        raise CompressError(f"variant {variant}: pruned weights do not fit the smaller config "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    small.generation_config = model.generation_config
    small.to(getattr(torch, dtype)).save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(parent_dir).save_pretrained(out_dir)
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in small.parameters())
    return {"block_importance": [round(s, 6) for s in block_scores], "dropped_layers": dropped,
            "layers": [plan.layers, len(kept_layers)], "intermediate_size": [plan.intermediate,
                                                                             plan.kept_intermediate],
            "parameters": [before, after], "parameter_ratio": round(after / before, 4)}
