"""`sovforge run RECIPE` evaluate stage: make tasks from the ingest corpus, score the recipe's models, apply `gate`."""

from __future__ import annotations

from pathlib import Path


def run_stage(cfg, ctx) -> Path:
    from sovforge.evaluate.maketasks import make_tasks
    from sovforge.evaluate.runner import evaluate_models

    tasks_dir = ctx.out.parent / f"{ctx.out.name}.tasks"
    make_tasks(ctx.input("ingest"), tasks_dir, max_items=cfg.cloze_items_max, seed=cfg.seed)
    models = [Path(ctx.input(stage)) for stage in ("base", "model", "adapt", "compress") if stage in ctx.artifacts]
    reference, candidates = models[0], models[1:] or models[:1]
    evaluate_models(candidates, cfg.suite, ctx.out, tasks_dir=tasks_dir,
                    reference=reference if len(models) > 1 else None, gate=ctx.recipe.gate, limit=cfg.limit)
    return ctx.out
