"""Config of the `evaluate` stage and its promotion gate (`sovforge evaluate MODEL... --suite SUITE --out DIR`)."""

from __future__ import annotations

from pydantic import Field

from sovforge._config_base import StrictModel


class EvaluateConfig(StrictModel):
    """`sovforge evaluate`: domain, safety and speed scores in one report."""

    suite: list[str] = Field(default_factory=lambda: ["sovforge_ppl", "sovforge_cloze"])
    """lm-eval task names to run (generated domain tasks and/or any local lm-eval task)."""
    limit: int | None = Field(None, ge=1)
    """Score at most this many documents per task (None = all)."""
    batch_size: int = Field(1, ge=1)
    """lm-eval batch size."""
    cloze_items_max: int = Field(500, ge=1)
    """Most cloze items `make-tasks` writes."""
    seed: int = 0
    """Seed for cloze distractor choice."""


class GateConfig(StrictModel):
    """Rules a candidate must pass, relative to a reference model, to be promoted."""

    ppl_ratio_max: float | None = Field(1.05, gt=0)
    """Candidate word perplexity must be ≤ reference × this (None = rule off)."""
    cloze_drop_max_points: float | None = Field(2.0, ge=0)
    """Candidate cloze accuracy may be at most this many percentage points below the reference."""
    canary_extractions_max: int | None = Field(0, ge=0)
    """Most canaries the candidate may reproduce by greedy decoding."""
    marking_leaks_max: int | None = Field(0, ge=0)
    """Most generations that may contain a classification marking."""
