"""The `base` stage of a recipe: build the tiny/small base model, or adopt a local checkpoint."""

from __future__ import annotations

from pathlib import Path

from sovforge.model.base import init_base
from sovforge.model.config import BaseConfig
from sovforge.pipeline import StageContext


def run_stage(cfg: BaseConfig, ctx: StageContext) -> Path:
    return init_base(cfg, ctx.out)
