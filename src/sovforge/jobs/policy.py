"""What a job may do, decided before anything reaches an engine: the tenant's members, GPU quota and clearance.

    refusal = check(spec, tenant, data_level, data_reasons, held_gpus)   # None, or the reason in one line

The engines keep their own limits (Kueue ClusterQueue quotas, Slurm account limits); this is the early,
explainable gate: a refused submission names why and nothing is submitted.
"""

from __future__ import annotations

from pathlib import Path

from sovforge.artifacts import MANIFEST, Artifact, LineageError, load_artifact, open_input
from sovforge.classification import Level, parse_level
from sovforge.config import STAGE_ORDER, Recipe, RecipeError
from sovforge.jobs.config import JobSpec, Tenant
from sovforge.jobs.engine import is_adapt

# Options of sovforge verbs that name a classification the command may produce or accept.
LEVEL_OPTIONS = ("--max-classification", "--classification")


class Refused(Exception):
    """The job was refused before submission; the message is the reason."""


def recipe_state(recipe: Recipe, cwd: Path) -> dict[str, dict]:
    """WORKDIR/state.json of the recipe (the artifacts earlier stages produced), {} when none yet."""
    import json

    workdir = recipe.workdir if recipe.workdir.is_absolute() else cwd / recipe.workdir
    path = workdir / "state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def recipe_inputs(recipe: Recipe, stage: str | None, cwd: Path) -> tuple[list[Artifact], Level, list[str]]:
    """Artifacts the recipe job reads, the highest level of data it may touch, and where that level comes from."""
    stages = recipe.selected_stages()
    if stage is not None and stage not in stages:
        raise RecipeError(f"--stage {stage}: the recipe runs {stages}, not {stage}")
    running = [stage] if stage else stages
    reasons = [f"recipe max_classification {recipe.max_classification}"]
    levels = [parse_level(recipe.max_classification)]
    if "ingest" in running and recipe.ingest is not None:
        levels.append(parse_level(recipe.ingest.max_classification))
        reasons.append(f"ingest.max_classification {recipe.ingest.max_classification}")
    if "base" in running and recipe.base is not None and recipe.base.path is not None:
        levels.append(parse_level(recipe.base.classification))
        reasons.append(f"base model declared {recipe.base.classification}")
    inputs: list[Artifact] = []
    first = min(STAGE_ORDER.index(s) for s in running)
    for name, entry in sorted(recipe_state(recipe, cwd).items(), key=lambda kv: STAGE_ORDER.index(kv[0])
                              if kv[0] in STAGE_ORDER else 99):
        # A whole recipe may reuse any earlier result; one stage reads only the stages before it.
        if name not in STAGE_ORDER or (stage is not None and STAGE_ORDER.index(name) >= first):
            continue
        try:
            artifact = open_input(entry["artifact"])
        except (LineageError, KeyError, OSError):
            continue
        inputs.append(artifact)
        levels.append(artifact.classification)
        reasons.append(f"input {artifact.kind} {artifact.id[:12]} ({name}) is {artifact.classification}")
    return inputs, max(levels), reasons


def command_inputs(command: list[str], cwd: Path) -> tuple[list[Artifact], Level, list[str]]:
    """For a verb job: every argument that is an artifact directory is an input; level options count too."""
    inputs: list[Artifact] = []
    levels, reasons = [Level.UNCLASSIFIED], []
    for i, arg in enumerate(command):
        if arg in LEVEL_OPTIONS and i + 1 < len(command):
            levels.append(parse_level(command[i + 1]))
            reasons.append(f"{arg} {command[i + 1]}")
            continue
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if arg.startswith(tuple(f"{o}=" for o in LEVEL_OPTIONS)):
            levels.append(parse_level(value))
            reasons.append(arg)
            continue
        path = Path(value) if Path(value).is_absolute() else cwd / value
        if (path / MANIFEST).is_file() and not _is_output(command, i):
            try:
                artifact = load_artifact(path)
            except LineageError:
                continue
            inputs.append(artifact)
            levels.append(artifact.classification)
            reasons.append(f"input {artifact.kind} {artifact.id[:12]} ({value}) is {artifact.classification}")
    return inputs, max(levels), reasons


def _is_output(command: list[str], i: int) -> bool:
    return i > 0 and command[i - 1] == "--out"


def check_shape(spec: JobSpec) -> str | None:
    """Requests no engine could run as asked."""
    res = spec.resources
    if res.nodes > 1 and not is_adapt(spec):
        return "only the adapt stage runs across nodes; other stages run on one node (use --nodes 1)"
    if res.total_gpus > 1 and spec.recipe is not None and spec.stage is None:
        return ("a whole recipe runs its stages one after another on one GPU; submit the multi-GPU adapt on its "
                "own (--stage adapt)")
    return None


def check(spec: JobSpec, tenant_name: str, tenant: Tenant, data_level: Level, reasons: list[str],
          held_gpus: int) -> str | None:
    """None when the tenant may run the job now; otherwise the reason, in one line."""
    if tenant.users is not None and spec.submitter not in tenant.users:
        return f"{spec.submitter} is not a member of tenant {tenant_name} (members: {', '.join(tenant.users)})"
    clearance = parse_level(tenant.max_classification)
    if data_level > clearance:
        why = "; ".join(r for r in reasons if str(data_level) in r) or "; ".join(reasons)
        return (f"tenant {tenant_name} is cleared for {clearance} data, but this job may process {data_level} "
                f"data ({why})")
    wanted = spec.resources.total_gpus
    if wanted > tenant.gpu_quota:
        return f"{wanted} GPUs requested, but tenant {tenant_name}'s quota is {tenant.gpu_quota} GPUs"
    if held_gpus + wanted > tenant.gpu_quota:
        return (f"tenant {tenant_name} already holds {held_gpus} of its {tenant.gpu_quota} GPUs in pending or "
                f"running jobs; {wanted} more would exceed the quota (wait, or cancel a job)")
    return check_shape(spec)
