"""`sovforge preflight RECIPE`: every local path a recipe needs, checked before anything runs.

Air-gapped runs fail late and expensively when a file is missing (a tokenizer not copied across the gap, a data
directory on another volume). Each config section may define `required_paths() -> list[(what, Path)]`; this module
adds the base model's files and the signing key location, and reports what is missing. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from sovforge.artifacts import sovforge_home
from sovforge.config import STAGE_ORDER, Recipe
from sovforge.offline import missing_paths


def required_paths(recipe: Recipe) -> list[tuple[str, Path]]:
    needed: list[tuple[str, Path]] = []
    if recipe.base is not None:
        if recipe.base.path is not None:
            root = Path(recipe.base.path)
            needed += [("base model config", root / "config.json")]
            weights = sorted(root.glob("*.safetensors")) or [root / "model.safetensors"]
            needed += [("base model weights", w) for w in weights]
            tokenizer = next((root / n for n in ("tokenizer.json", "tokenizer.model") if (root / n).exists()),
                             root / "tokenizer.json")
            needed += [("base tokenizer", tokenizer)]
        else:
            needed += [("base tokenizer/pre-training text", Path(p)) for p in recipe.base.text]
    for stage in (*STAGE_ORDER, "serve", "gate"):
        section = getattr(recipe, stage, None)
        if section is not None and stage != "base" and hasattr(section, "required_paths"):
            needed += [(f"{stage}: {what}", Path(path)) for what, path in section.required_paths()]
    return needed


def preflight(recipe: Recipe) -> tuple[list[tuple[str, Path]], list[str]]:
    """(needed paths, missing lines). The signing key directory must be writable (keys are made on first use)."""
    needed = required_paths(recipe)
    missing = missing_paths(needed)
    home = sovforge_home()
    needed.append(("signing key directory ($SOVFORGE_HOME)", home))
    if not os.access(home, os.W_OK):
        missing.append(f"signing key directory ($SOVFORGE_HOME): {home} (not writable)")
    return needed, missing
