"""`sovforge run RECIPE` evaluate stage: make tasks from the ingest corpus, score base / adapt / variants in
ONE report, apply the recipe's `gate:` (default rules when it has none) to the candidate.

    models     base (the reference), adapt (a model, or an adapter scored as base + adapter), every variant of
               the compress artifact (`stats.variants: {name: relative_path}`), named base / adapt / <variant>
    candidate  `evaluate.candidate` (adapt | base | a variant name); default adapt when the recipe has one,
               else base
    tasks      WORKDIR/evaluate.tasks (make-tasks output; rerunnable with plain lm_eval --include_path)

A failed gate still writes the report (promoted: false) and then raises GateFailed, naming the failed rules,
so `sovforge run` exits non-zero. With a LoRA adapt, compress's `merged` variant is the dense model `sovforge
serve` can load: make it the candidate (`evaluate.candidate: merged`) to promote something servable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovforge.evaluate.config import EvaluateConfig, GateConfig


def run_stage(cfg: EvaluateConfig, ctx: Any) -> Path:
    from sovforge.evaluate.maketasks import make_tasks
    from sovforge.evaluate.models import EvaluateError, open_model
    from sovforge.evaluate.runner import GateFailed, evaluate_models

    corpus = ctx.input("ingest")
    tasks_dir = ctx.out.parent / f"{ctx.out.name}.tasks"
    if any(t.startswith("sovforge_") for t in cfg.suite):
        make_tasks(corpus, tasks_dir, max_items=cfg.cloze_items_max, seed=cfg.seed)
    notes: list[str] = []
    models = open_model(ctx.input("base"), "base")
    if "adapt" in ctx.artifacts:
        models += open_model(ctx.input("adapt"), "adapt")
    if "compress" in ctx.artifacts:
        # open_model names each variant "compress/<variant>"; the variant name alone reads better unless it
        # would collide with "base" / "adapt"
        for variant in open_model(ctx.input("compress"), "compress", notes):
            short = variant.name.removeprefix("compress/")
            variant.name = short if short not in ("base", "adapt") else variant.name
            models.append(variant)
    names = [m.name for m in models]
    wanted = cfg.candidate or ("adapt" if "adapt" in names else "base")
    if wanted not in names:
        raise EvaluateError(
            f"evaluate.candidate: {wanted!r} is not one of this recipe's models ({', '.join(names)})"
        )
    summary = evaluate_models(
        models,
        cfg,
        ctx.out,
        tasks_dir=tasks_dir if tasks_dir.is_dir() else None,
        reference_index=0,
        candidate_index=names.index(wanted),
        gate=ctx.recipe.gate or GateConfig(),
        corpus=corpus,
        notes=notes,
    )
    if summary["promoted"] is False:
        raise GateFailed(
            f"evaluate: candidate {wanted} NOT promoted (report written to {ctx.out}); failed rules: "
            + "; ".join(summary["failed_rules"]),
            summary,
        )
    return ctx.out
