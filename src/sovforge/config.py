"""Pipeline recipes: the typed signature of a whole run, one section per stage.

A recipe is YAML; this module is its schema. Unknown keys are errors that name the key's path
(`adapt.lora.rnak: unknown key`), so a typo never silently falls back to a default.

    name: demo
    workdir: runs/demo
    base:     {...}   # sovforge.model.config.BaseConfig
    ingest:   {...}   # sovforge.ingest.config.IngestConfig
    adapt:    {...}   # sovforge.adapt.config.AdaptConfig
    compress: {...}   # sovforge.compress.config.CompressConfig
    evaluate: {...}   # sovforge.evaluate.config.EvaluateConfig
    gate:     {...}   # sovforge.evaluate.config.GateConfig
    rag:      {...}   # sovforge.rag.config.RagConfig
    serve:    {...}   # sovforge.serve.config.ServeConfig

Relative paths inside a recipe are relative to the directory `sovforge run` is started from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from sovforge._config_base import StrictModel
from sovforge.adapt.config import AdaptConfig
from sovforge.classification import parse_level
from sovforge.compress.config import CompressConfig
from sovforge.evaluate.config import EvaluateConfig, GateConfig
from sovforge.ingest.config import IngestConfig
from sovforge.model.config import BaseConfig
from sovforge.rag.config import RagConfig
from sovforge.serve.config import ServeConfig

# The order stages run in; each reads the artifacts of the ones before it.
STAGE_ORDER: tuple[str, ...] = ("base", "ingest", "adapt", "compress", "evaluate", "rag")


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the offending key path."""


class Recipe(StrictModel):
    """A pipeline recipe: which stages to run and how."""

    name: str = "recipe"
    """A short name, used in artifact directory names and reports."""
    workdir: Path = Path("runs/recipe")
    """Where the stages' artifact directories are written (`WORKDIR/<stage>`)."""
    stages: list[str] | None = None
    """Stages to run, in pipeline order; default: every stage that has a section."""
    base: BaseConfig | None = None
    """The base model: built locally (`preset`) or an existing local checkpoint (`path`)."""
    ingest: IngestConfig | None = None
    """Documents → corpus."""
    adapt: AdaptConfig | None = None
    """Continued pre-training / SFT on the corpus."""
    compress: CompressConfig | None = None
    """Quantised, pruned, distilled variants."""
    evaluate: EvaluateConfig | None = None
    """Scores of the models side by side."""
    gate: GateConfig | None = None
    """Promotion rules applied by `evaluate`."""
    rag: RagConfig | None = None
    """Retrieval index over the corpus."""
    serve: ServeConfig | None = None
    """How `sovforge serve` exposes the result (not run by `sovforge run`)."""
    max_classification: str = Field("UNCLASSIFIED")
    """Highest classification this recipe may produce; a stage whose artifact would exceed it fails."""

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str] | None) -> list[str] | None:
        if stages is None:
            return None
        unknown = [s for s in stages if s not in STAGE_ORDER]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGE_ORDER)}")
        return sorted(set(stages), key=STAGE_ORDER.index)

    @field_validator("max_classification")
    @classmethod
    def _level(cls, value: str) -> str:
        return str(parse_level(value))

    def selected_stages(self) -> list[str]:
        """The stages to run, in pipeline order."""
        if self.stages is not None:
            missing = [s for s in self.stages if getattr(self, s) is None]
            if missing:
                raise RecipeError(f"stages {missing} are listed but have no section in the recipe")
            return list(self.stages)
        return [s for s in STAGE_ORDER if getattr(self, s) is not None]


def format_validation_error(exc: ValidationError, source: str, what: str = "recipe") -> str:
    """`SOURCE: invalid WHAT` and one line per error with the key's dotted path (`base.vocab_sise: unknown key`)."""
    lines = [f"{source}: invalid {what}"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source)) from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    return parse_recipe(data, str(path))
