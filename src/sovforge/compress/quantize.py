"""Quantisation and unstructured / N:M pruning through llm-compressor's `oneshot` (GPTQ, SmoothQuant, FP8, SparseGPT,
Wanda...): one variant of `sovforge compress MODEL --corpus CORPUS --out OUT`.

    variant = VariantConfig(name="w4a16", modifiers=[{"GPTQModifier": {"scheme": "W4A16", "targets": "Linear",
                                                                         "ignore": ["lm_head"]}}])
    modifiers = build_modifiers(variant)          # names, schemes and arguments checked; CompressError otherwise
    check_fits(variant.name, modifiers, model)    # group sizes / N:M structure vs the model's Linear shapes
    stats = run_oneshot(parent_dir, variant, modifiers, calibration, out_dir, dtype="bfloat16")

The result is a compressed-tensors checkpoint (`config.json` carries `quantization_config`) that plain
`AutoModelForCausalLM.from_pretrained` and vLLM load, with llm-compressor's `recipe.yaml` beside the weights.
llm-compressor calibrates on CPU when no accelerator is present, so small models compress here.
"""

from __future__ import annotations

import enum
import functools
import re
import traceback
from pathlib import Path
from typing import Any

from sovforge.compress.config import CompressError, VariantConfig

TRACE_FUNCTION = "trace_subgraphs"  # llm-compressor's sequential pipeline: torch.fx tracing of the model


@functools.cache
def modifier_classes() -> dict[str, type]:
    """Every modifier class llm-compressor provides (main + experimental registry), by name."""
    from llmcompressor.modifiers.factory import ModifierFactory

    if not ModifierFactory._loaded:
        ModifierFactory.refresh()
    found = {**ModifierFactory._main_registry, **ModifierFactory._experimental_registry,
             **ModifierFactory._registered_registry}
    return {name: cls for name, cls in found.items() if name != "Modifier"}


def preset_schemes() -> list[str]:
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    return sorted(PRESET_SCHEMES)


def _check_scheme(variant: str, modifier: str, scheme: Any) -> None:
    names = [scheme] if isinstance(scheme, str) else list(scheme) if isinstance(scheme, dict) else None
    if names is None:
        raise CompressError(f"variant {variant}: {modifier}.scheme must be a preset name or "
                            f"{{preset: targets}}, got {type(scheme).__name__}")
    valid = preset_schemes()
    unknown = [n for n in names if str(n).upper() not in valid]
    if unknown:
        raise CompressError(f"variant {variant}: unknown quantisation scheme {unknown[0]!r} in {modifier}; "
                            f"compressed-tensors provides {valid}")


def _pruning_ignore(ignore: list[str]) -> list[str]:
    """llm-compressor 0.14's SparseGPT/Wanda match a targeted Linear under the name "<name>." (trailing dot), so a
    plain `ignore: [lm_head]` silently fails and lm_head is pruned. Add the exact-name regex for each plain entry so
    the ignore list means what it says (the saved recipe.yaml shows both)."""
    extra = [f"re:^{re.escape(entry)}\\.?$" for entry in ignore
             if not entry.startswith("re:") and not entry[:1].isupper()]  # Capitalised = a class name, matched as is
    return ignore + [e for e in extra if e not in ignore]


def build_modifiers(variant: VariantConfig) -> list[Any]:
    """Fresh llm-compressor Modifier instances for the variant's recipe; CompressError naming any bad entry."""
    from pydantic import ValidationError

    classes = modifier_classes()
    modifiers = []
    for entry in variant.modifiers or []:
        (name, args), = entry.items()
        if name not in classes:
            raise CompressError(f"variant {variant.name}: unknown llm-compressor modifier {name!r}; "
                                f"llmcompressor provides {sorted(classes)}")
        args = dict(args or {})
        if "scheme" in args:
            _check_scheme(variant.name, name, args["scheme"])
        if "mask_structure" in classes[name].model_fields and isinstance(args.get("ignore"), list):
            args["ignore"] = _pruning_ignore(args["ignore"])
        try:
            modifiers.append(classes[name](**args))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: "
                                 f"{'unknown argument' if e['type'] == 'extra_forbidden' else e['msg']}"
                                 for e in exc.errors())
            raise CompressError(f"variant {variant.name}: bad {name} arguments: {problems}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise CompressError(f"variant {variant.name}: bad {name} arguments: {exc}") from None
    return modifiers


def check_fits(variant: str, modifiers: list[Any], model: Any) -> None:
    """Refuse, before any work, a recipe whose group size or N:M mask does not divide a targeted Linear's input width.

    `model` may live on the meta device (shapes only). llm-compressor would otherwise fail deep inside GPTQ.
    """
    from compressed_tensors.quantization import QuantizationStrategy
    from compressed_tensors.utils import match_named_modules
    from llmcompressor.modifiers.quantization.quantization import QuantizationMixin

    problems: list[str] = []
    for modifier in modifiers:
        label = type(modifier).__name__
        if isinstance(modifier, QuantizationMixin):
            config = modifier.resolve_quantization_config()
            for scheme in config.config_groups.values():
                weights = scheme.weights
                if weights is None or weights.strategy not in (QuantizationStrategy.GROUP,
                                                               QuantizationStrategy.TENSOR_GROUP):
                    continue
                for name, module in match_named_modules(model, scheme.targets, config.ignore):
                    columns = module.weight.shape[-1]
                    if columns % weights.group_size:
                        problems.append(f"{label} group_size {weights.group_size} does not divide the "
                                        f"{columns} input columns of {name}")
        prune_m = getattr(modifier, "_prune_m", None)
        if prune_m:  # N:M sparsity (e.g. 2:4) groups M consecutive input weights
            for name, module in match_named_modules(model, modifier.targets, modifier.ignore):
                if module.weight.shape[-1] % prune_m:
                    problems.append(f"{label} mask_structure {modifier.mask_structure} needs input width "
                                    f"divisible by {prune_m}; {name} has {module.weight.shape[-1]}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CompressError(f"variant {variant}: {'; '.join(problems[:3])}{more}. Use a smaller group_size "
                            "(config_groups) or add those layers to `ignore`")


def _raised_while_tracing(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if any(frame.name == TRACE_FUNCTION for frame in traceback.extract_tb(seen.__traceback__)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _plain(value: Any) -> Any:
    """Enums → their values, recursively: llm-compressor's own recipe.yaml dump writes `!!python/object` tags for
    enums (e.g. actorder), which `yaml.safe_load` — and llm-compressor's own recipe loader — cannot read back."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_safe_recipe(out_dir: Path) -> None:
    """Rewrite `recipe.yaml` (the recipe of the finished oneshot session) as plain, safe-loadable YAML."""
    import yaml
    from llmcompressor.core import active_session

    recipe = active_session().lifecycle.recipe
    (out_dir / "recipe.yaml").write_text(
        yaml.safe_dump(_plain(recipe.to_dict()), sort_keys=False, allow_unicode=True), encoding="utf-8")


def linear_sparsity(model: Any, modifiers: list[Any]) -> dict[str, dict[str, Any]]:
    """{layer: {sparsity, pattern, targeted}} for every Linear a pruning modifier targeted and every other Linear that
    has zeros: the zeros actually in the weights, not what the recipe asked for.

    `pattern` is "2:4" (or N:M) when every group of M consecutive input weights has at least M-N zeros.
    """
    import torch
    from compressed_tensors.utils import match_named_modules

    pruning = [m for m in modifiers if hasattr(m, "mask_structure")]
    if not pruning:
        return {}
    targeted = {name for m in pruning for name, _ in match_named_modules(model, m.targets, m.ignore)}
    n, m = getattr(pruning[0], "_prune_n", 0) or 0, getattr(pruning[0], "_prune_m", 0) or 0
    report: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or not hasattr(module, "weight"):
            continue
        weight = module.weight.detach()  # (out_features, in_features)
        zeros = weight == 0
        sparsity = float(zeros.float().mean())
        if name not in targeted and sparsity == 0:
            continue
        row: dict[str, Any] = {"sparsity": round(sparsity, 6), "shape": list(weight.shape),
                               "targeted": name in targeted}
        if m and weight.shape[-1] % m == 0:
            per_group = zeros.reshape(weight.shape[0], -1, m).sum(-1)  # (out, in/m) zeros per group
            row["pattern"] = f"{m - n}:{m}" if bool((per_group >= m - n).all()) else None
        report[name] = row
    return report


def run_oneshot(parent_dir: Path, variant: VariantConfig, calibration: Any, out_dir: Path, *,
                dtype: str) -> dict[str, Any]:
    """Apply the variant's recipe with `oneshot` on CPU/GPU, save compressed-tensors + recipe.yaml into `out_dir`."""
    import torch
    from llmcompressor import oneshot
    from llmcompressor.core import reset_session

    from sovforge.model.loading import load_model, load_tokenizer, model_type

    modifiers = build_modifiers(variant)
    model = load_model(parent_dir)  # fp32: GPTQ / SparseGPT Hessians in full precision on CPU
    tokenizer = load_tokenizer(parent_dir)
    needs_data = any(getattr(m, "requires_calibration_data", True) for m in modifiers)
    reset_session()
    try:
        oneshot(model=model, tokenizer=tokenizer, recipe=modifiers, pipeline=variant.pipeline,
                dataset=calibration.dataset() if needs_data else None,
                num_calibration_samples=len(calibration.blocks), max_seq_length=calibration.blocks.shape[1],
                shuffle_calibration_samples=False, save_compressed=True)
    except Exception as exc:
        if _raised_while_tracing(exc):
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise CompressError(
                f"variant {variant.name}: llm-compressor cannot trace this {model_type(parent_dir)} model "
                f"({type(model).__name__}) for its sequential calibration pipeline: {last}. "
                "Set `pipeline: basic` on the variant to calibrate without tracing (the whole model in memory)"
            ) from exc
        raise
    quantized = sorted(name for name, module in model.named_modules() if getattr(module, "quantization_scheme", None))
    model.to(getattr(torch, dtype))  # non-quantised tensors (embeddings, norms, lm_head, scales) in the save dtype
    sparsity = linear_sparsity(model, modifiers)  # after the cast: the zeros that are saved
    model.save_pretrained(out_dir, save_compressed=True)  # llm-compressor's wrapper: compressed-tensors + recipe
    tokenizer.save_pretrained(out_dir)
    write_safe_recipe(out_dir)
    reset_session()
    stats: dict[str, Any] = {"modifiers": [type(m).__name__ for m in modifiers], "quantized_layers": len(quantized),
                             "calibration_samples": len(calibration.blocks) if needs_data else 0}
    if sparsity:
        values = [row["sparsity"] for row in sparsity.values()]
        stats["sparsity"] = {"mean": round(sum(values) / len(values), 6), "min": min(values), "max": max(values),
                             "layers": sparsity}
    return stats
