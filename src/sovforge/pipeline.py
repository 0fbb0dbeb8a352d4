"""`sovforge run RECIPE.yaml`: run a recipe's stages in order, skipping the ones whose inputs are unchanged.

Each stage lives in `sovforge.<package>.stage` and exposes

    def run_stage(cfg: <its config section>, ctx: StageContext) -> Path   # the artifact directory it wrote

A stage reads earlier stages' artifacts through `ctx.input("ingest")` and writes its own under `ctx.out`.
The cache key of a stage is the hash of its config section, the ids of the artifacts before it and the sovforge
version; when `WORKDIR/state.json` holds the same key and the artifact still verifies, the stage is skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sovforge import __version__
from sovforge.artifacts import MANIFEST, canonical_json, open_input, verify
from sovforge.classification import parse_level
from sovforge.config import STAGE_ORDER, Recipe, RecipeError

STAGE_MODULES = {
    "base": "sovforge.model.stage",
    "ingest": "sovforge.ingest.stage",
    "adapt": "sovforge.adapt.stage",
    "compress": "sovforge.compress.stage",
    "evaluate": "sovforge.evaluate.stage",
    "rag": "sovforge.rag.stage",
}


class StageNotBuilt(RuntimeError):
    """The recipe names a stage whose implementation has not landed yet."""


@dataclass
class StageContext:
    """What a stage gets besides its own config: the recipe, where to write, and earlier artifacts."""

    recipe: Recipe
    workdir: Path
    out: Path
    artifacts: dict[str, Path] = field(default_factory=dict)

    def input(self, stage: str) -> Path:
        """The artifact directory an earlier stage produced; a clear error if the recipe lacks it."""
        if stage not in self.artifacts:
            raise RecipeError(
                f"this stage needs the output of `{stage}`, but the recipe has no `{stage}` section "
                f"and {self.workdir / stage} holds no earlier result"
            )
        return self.artifacts[stage]


def stage_runner(stage: str) -> Callable[[Any, StageContext], Path]:
    try:
        module = importlib.import_module(STAGE_MODULES[stage])
    except ModuleNotFoundError as exc:
        if exc.name == STAGE_MODULES[stage]:
            raise StageNotBuilt(f"stage `{stage}` is not built yet") from None
        raise
    return module.run_stage


def run_key(stage: str, cfg: Any, artifacts: dict[str, Path]) -> str:
    """Cache key: config + ids of earlier artifacts + version, plus — for a stage that reads raw files (ingest) —
    the stage module's `input_fingerprint(cfg)`, so an edited or added document reruns it."""
    inputs = {name: open_input(path).id for name, path in sorted(artifacts.items())}
    payload = {"stage": stage, "config": cfg.model_dump(mode="json"), "inputs": inputs, "version": __version__}
    try:
        module = importlib.import_module(STAGE_MODULES[stage])
    except ModuleNotFoundError:
        module = None  # not built yet: stage_runner says so
    if hasattr(module, "input_fingerprint"):
        payload["raw_inputs"] = module.input_fingerprint(cfg)
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def files_fingerprint(paths: list[Path]) -> str:
    """A cheap identity of raw input files/directories (each file's path, size and mtime), for `input_fingerprint`."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            stat = f.stat() if f.exists() else None
            digest.update(f"{f}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()


def _load_state(workdir: Path) -> dict[str, Any]:
    path = workdir / "state.json"
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}
    return {}


def _save_state(workdir: Path, state: dict[str, Any]) -> None:
    tmp = workdir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(workdir / "state.json")


def _cached(state: dict[str, Any], stage: str, key: str) -> Path | None:
    entry = state.get(stage)
    if not entry or entry.get("run_key") != key:
        return None
    path = Path(entry["artifact"])
    try:
        if open_input(path).id != entry.get("id"):
            return None
    except Exception:
        return None
    # A plain local checkpoint (external base) has no manifest: its content id above was the check.
    return path if not (path / MANIFEST).exists() or verify(path, walk_inputs=False).ok else None


def _distributed() -> tuple[int, int]:
    """(rank, world size) of this process under accelerate launch / torchrun; (0, 1) when run alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def run_recipe(recipe: Recipe, *, from_stage: str | None = None, only: list[str] | None = None,
               console: Console | None = None) -> dict[str, Path]:
    """Run the recipe's stages; return {stage: artifact path} for every stage that ran or was reused."""
    console = console or Console(stderr=True, soft_wrap=True)
    stages = recipe.selected_stages()
    if only:
        stages = [s for s in stages if s in only]
    if from_stage is not None:
        if from_stage not in STAGE_ORDER:
            raise RecipeError(f"--from {from_stage}: unknown stage; stages are {list(STAGE_ORDER)}")
        if from_stage not in stages:
            raise RecipeError(f"--from {from_stage}: the recipe does not run that stage (it runs {stages})")
    workdir = Path(recipe.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = _load_state(workdir)
    # Artifacts of stages not run now but produced earlier in this workdir are still valid inputs.
    artifacts: dict[str, Path] = {
        s: Path(e["artifact"]) for s, e in state.items() if Path(e["artifact"]).is_dir()
    }
    forced = False
    for stage in stages:
        forced = forced or stage == from_stage
        cfg = getattr(recipe, stage)
        earlier = {s: p for s, p in artifacts.items() if STAGE_ORDER.index(s) < STAGE_ORDER.index(stage)}
        key = run_key(stage, cfg, earlier)
        cached = None if forced else _cached(state, stage, key)
        if cached is not None:
            console.print(f"[dim]• {stage}: unchanged, reusing {cached}[/dim]")
            artifacts[stage] = cached
            continue
        runner = stage_runner(stage)
        console.print(f"[bold]• {stage}[/bold] → {workdir / stage}")
        started = time.perf_counter()
        ctx = StageContext(recipe=recipe, workdir=workdir, out=workdir / stage, artifacts=earlier)
        path = Path(runner(cfg, ctx))
        rank, world = _distributed()
        if world > 1:
            # Under `accelerate launch` / torchrun only rank 0 writes the artifact (see adapt); every rank waits
            # for it here, and only rank 0 checks it and records state.json.
            _barrier()
            if rank != 0:
                artifacts[stage] = path
                continue
        artifact = open_input(path)
        if artifact.classification > parse_level(recipe.max_classification):
            if (path / MANIFEST).exists() and path.resolve().is_relative_to(workdir.resolve()):
                shutil.rmtree(path)  # never leave an artifact above the recipe's ceiling lying in the workdir
            raise RecipeError(
                f"stage {stage} produced a {artifact.classification} artifact, above the recipe's "
                f"max_classification {recipe.max_classification}"
            )
        artifacts[stage] = path
        state[stage] = {"run_key": key, "artifact": str(path), "id": artifact.id,
                        "seconds": round(time.perf_counter() - started, 2)}
        _save_state(workdir, state)
        # A rerun stage invalidates everything after it: their keys include this artifact's id.
        console.print(f"  {artifact.kind} {artifact.id[:12]} [{artifact.classification}] "
                      f"in {state[stage]['seconds']} s")
    return {s: artifacts[s] for s in stages if s in artifacts}
