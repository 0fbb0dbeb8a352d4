"""`sovforge compress MODEL --corpus CORPUS --out OUT [--recipe FILE.yaml | --variant w4a16 ...]` — and the
`compress` stage of `sovforge run RECIPE` (`run_stage`): lighter variants of a model, each measured.

    OUT/                       kind "compressed": inputs = the model + the corpus; stats.variants = {name: "name"}
                               (HF-loadable variants, what `evaluate` scores), stats.gguf = {name: "name/model.gguf"}
      compare.json compare.md compare.png      every variant and the parent, same prompts/tokens, one run
      <variant>/               kind "compressed" (or "model" for `merged`): its own signed artifact, whose inputs
        config.json model.safetensors ...      are its parent (the input model or an earlier variant) and the
        recipe.yaml variant.yaml               corpus; calibration.json names the calibration documents
        calibration.json

Steps: (1) check everything before any work — modifier names, schemes and arguments (against llmcompressor /
compressed-tensors), group sizes vs the model's Linear shapes, structured-pruning and GGUF architecture support,
the calibration count vs the corpus; (2) build the variants in order (an adapter input is first merged into
`merged`); (3) measure the parent and every variant; (4) write the comparison. An exception anywhere leaves no
artifact behind (`build_artifact` stages and renames).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from sovforge.compress.config import CompressConfig, CompressError, VariantConfig


def _meta_model(config: dict[str, Any]) -> Any:
    """A weightless model of `config` (shapes only) for checking recipes against Linear widths."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k not in ("_name_or_path", "quantization_config", "model_type")}
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(config["model_type"], **fields))


def check_plan(cfg: CompressConfig, parent_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate every variant against llmcompressor and the (predicted) shape of its parent; {name: its config}."""
    from sovforge.compress.export import check_gguf_arch
    from sovforge.compress.prune import prune_plan, pruned_config
    from sovforge.compress.quantize import build_modifiers, check_fits

    configs: dict[str | None, dict[str, Any]] = {None: parent_config}
    for variant in cfg.variants:
        for dep in variant.depends_on():
            if configs[dep].get("gguf"):
                raise CompressError(f"variant {variant.name} starts from {dep}, a GGUF file; start from an HF variant")
        config = configs[variant.parent]
        if config.get("quantization_config") and variant.kind in ("modifiers", "structured", "distill"):
            raise CompressError(f"variant {variant.name}: its parent is already quantised "
                                f"({config['quantization_config'].get('format', 'compressed-tensors')}); start from a "
                                "dense model (a structured, distill or hf variant, or the input)")
        if variant.kind == "modifiers":
            check_fits(variant.name, build_modifiers(variant), _meta_model(config))
            configs[variant.name] = {**config, "quantization_config": {"format": "compressed-tensors"}}
        elif variant.kind == "structured":
            plan = prune_plan(config, variant.structured, variant.name)
            configs[variant.name] = pruned_config(config, list(range(plan.layers - plan.drop_layers)),
                                                  plan.kept_intermediate)
        elif variant.kind == "distill":
            overrides = variant.distill.student_config or {}
            unknown = [k for k in overrides if k not in config]
            if unknown:
                raise CompressError(f"variant {variant.name}: student_config keys {unknown} are not in the teacher's "
                                    "config (e.g. num_hidden_layers, intermediate_size, hidden_size)")
            student = configs[variant.distill.student] if variant.distill.student else {**config, **overrides}
            if student.get("vocab_size") != config.get("vocab_size"):
                raise CompressError(f"variant {variant.name}: the student's vocabulary differs from the teacher's")
            configs[variant.name] = student
        elif variant.kind == "gguf":
            check_gguf_arch(config, variant.name)
            configs[variant.name] = {**config, "gguf": True}
        else:  # hf: dense (a compressed-tensors parent is decompressed on export)
            configs[variant.name] = {k: v for k, v in config.items() if k != "quantization_config"}
    return {k: v for k, v in configs.items() if k is not None}


def _needs_calibration(variant: VariantConfig) -> bool:
    return variant.kind in ("modifiers", "structured")


def _write_variant_recipe(path: Path, variant: VariantConfig, parent: str, dtype: str) -> None:
    """variant.yaml: what made this variant, in the form `compress.variants` accepts (plus its parent and dtype)."""
    spec = {"name": variant.name, "parent": parent, "dtype": dtype,
            **{k: v for k, v in variant.model_dump(mode="json", exclude_none=True).items()
               if k not in ("name", "parent", "dtype")}}
    path.write_text("# the sovforge compress variant that made this directory\n" +
                    yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if variant.kind != "modifiers":  # llm-compressor writes its own recipe.yaml for modifier variants
        (path.parent / "recipe.yaml").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")


def build_variant(variant: VariantConfig, *, root: Path, out: Path, parents: dict[str | None, Any], corpus: Any,
                  calibration: Any, dtype: str) -> Any:
    """Write one variant artifact at `root/<name>`; return it as an Artifact addressed at its final place."""
    from sovforge.artifacts import Artifact, build_artifact, load_artifact
    from sovforge.compress.distill import distill
    from sovforge.compress.export import export_gguf, export_hf
    from sovforge.compress.prune import structured_prune
    from sovforge.compress.quantize import run_oneshot
    from sovforge.model.loading import model_dir

    parent = parents[variant.parent]
    parent_dir = model_dir(parent.staged)
    inputs = [parent.artifact, corpus]
    with build_artifact(root / variant.name, kind="compressed") as staging:
        target = staging.path
        if variant.kind == "modifiers":
            stats = run_oneshot(parent_dir, variant, calibration, target, dtype=dtype)
        elif variant.kind == "structured":
            stats = structured_prune(parent_dir, variant.structured, calibration.blocks, target, dtype=dtype,
                                     variant=variant.name)
        elif variant.kind == "distill":
            student = parents[variant.distill.student] if variant.distill.student else None
            if student is not None:
                inputs.append(student.artifact)
            digest = hashlib.sha256(variant.model_dump_json().encode()).hexdigest()[:10]
            work = out.parent / f".{out.name}.{variant.name}-{digest}.run"  # resumable trainer dir, same config only
            stats = distill(parent_dir, student.staged if student else None, variant.distill, corpus.path, target,
                            work, dtype=dtype, variant=variant.name)
            shutil.rmtree(work, ignore_errors=True)
        elif variant.kind == "gguf":
            stats = export_gguf(parent_dir, target / "model.gguf", variant.gguf.type, variant=variant.name)
        else:
            stats = export_hf(parent_dir, target, variant.hf.dtype)
        _write_variant_recipe(target / "variant.yaml", variant, variant.parent or "input", variant.hf.dtype
                              if variant.hf else dtype)
        calibration_ref = None
        if _needs_calibration(variant):
            record = calibration.record()
            (target / "calibration.json").write_text(json.dumps(record, indent=2, ensure_ascii=False),
                                                     encoding="utf-8")
            calibration_ref = {k: record[k] for k in ("corpus_id", "samples", "seq_len", "split", "seed",
                                                      "documents_sha256")} | {"documents": len(record["documents"])}
        staging.finish(inputs=inputs, config={"variant": variant.model_dump(mode="json"), "dtype": dtype,
                                              "calibration": calibration_ref},
                       stats={**stats, "parent": {"name": variant.parent or "input", "id": parent.artifact.id}},
                       extra={"model": {"format": variant_format(target), "parent": variant.parent or "input"}})
    return Artifact(out / variant.name, load_artifact(root / variant.name).manifest)


def variant_format(path: Path) -> str:
    """"gguf", "compressed-tensors" (a quantisation_config in config.json) or "hf" (plain dense, incl. 2:4 zeros)."""
    if any(path.glob("*.gguf")):
        return "gguf"
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return "compressed-tensors" if config.get("quantization_config") else "hf"


class _Parent:
    """A model a variant can start from: where it is now (`staged`) and its artifact (addressed at its final path)."""

    def __init__(self, staged: Path, artifact: Any):
        self.staged, self.artifact = staged, artifact


def compress_model(model_path: str | Path, corpus_path: str | Path, cfg: CompressConfig, out: str | Path) -> Path:
    """Build, measure and compare every variant of `cfg`; returns OUT (an artifact listing the variants)."""
    from sovforge.artifacts import Artifact, build_artifact, load_artifact, open_input
    from sovforge.compress.compare import measure_all, write_comparison
    from sovforge.compress.data import calibration_blocks
    from sovforge.model.loading import load_tokenizer, model_dir

    out = Path(out)
    source = open_input(model_path)
    if source.kind not in ("model", "adapter", "compressed"):
        raise CompressError(f"{model_path}: a {source.kind} artifact, not a model (give a model or adapter artifact "
                            "or a local HF checkpoint)")
    corpus = open_input(corpus_path, kind="corpus")
    if source.kind == "adapter":
        base_path = source.config.get("base_model_path")
        if not base_path:
            raise CompressError(f"{source.path}: adapter manifest names no base_model_path to merge into")
        config_dir = model_dir(base_path)
    else:
        config_dir = model_dir(source.path)
    parent_config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    if source.kind == "adapter" and any(v.name == "merged" for v in cfg.variants):
        raise CompressError("variant name 'merged' is taken: with an adapter input, compress writes the merged "
                            "dense model as variant 'merged' itself; rename yours (e.g. merged-bf16)")
    check_plan(cfg, parent_config)  # (1) every variant checked before any work
    tokenizer = load_tokenizer(source.path if (Path(source.path) / "tokenizer.json").exists() else config_dir)
    calibration = None
    if any(_needs_calibration(v) for v in cfg.variants):
        calibration = calibration_blocks(corpus.path, corpus.id, tokenizer, cfg.calibration)

    with build_artifact(out, kind="compressed") as staging:
        root = staging.path
        parents: dict[str | None, _Parent] = {None: _Parent(Path(source.path), source)}
        variant_dirs: dict[str, str] = {}
        formats: dict[str, str] = {}
        if source.kind == "adapter":  # (2a) merge the LoRA adapter: the dense checkpoint every variant starts from
            from sovforge.adapt.merge import merge_adapter

            merge_adapter(source.path, root / "merged")
            parents[None] = _Parent(root / "merged", Artifact(out / "merged", load_artifact(root / "merged").manifest))
            variant_dirs["merged"], formats["merged"] = "merged", "hf"
        for variant in cfg.variants:  # (2) build
            artifact = build_variant(variant, root=root, out=out, parents=parents, corpus=corpus,
                                     calibration=calibration, dtype=variant.dtype or cfg.dtype)
            parents[variant.name] = _Parent(root / variant.name, artifact)
            variant_dirs[variant.name], formats[variant.name] = variant.name, variant_format(root / variant.name)
        rows: list[dict[str, Any]] = []
        if cfg.measure.enabled:  # (3) measure, (4) compare
            rows = measure_all(parents[None].staged, {n: root / d for n, d in variant_dirs.items()}, formats,
                               corpus.path, cfg.measure)
            write_comparison(rows, root)
        summary = {row["name"]: {k: row.get(k) for k in ("weight_mb", "ppl", "decode_tok_s", "top1_agreement")}
                   for row in rows}
        # stats.variants: what `transformers` loads (the evaluate stage scores each); GGUF files listed apart.
        staging.finish(inputs=[source, corpus], config=cfg.model_dump(mode="json"),
                       stats={"variants": {n: d for n, d in variant_dirs.items() if formats[n] != "gguf"},
                              "gguf": {n: f"{d}/model.gguf" for n, d in variant_dirs.items() if formats[n] == "gguf"},
                              "formats": formats, "parent": {"id": source.id, "kind": source.kind},
                              "compare": summary})
    return out


def run_stage(cfg: CompressConfig, ctx: Any) -> Path:
    """Recipe stage: compress the adapted model (or the base, when the recipe has no adapt) on the ingest corpus."""
    model = ctx.input("adapt") if "adapt" in ctx.artifacts else ctx.input("base")
    return compress_model(model, ctx.input("ingest"), cfg, ctx.out)
