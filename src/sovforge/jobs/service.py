"""Submit, track, account: what `sovforge jobs submit|status|logs|cancel|list|wait` do, engine-independent.

    job = submit(spec, tenants)         # refuses (Refused) before any engine is contacted, or returns the record
    job = refresh(job)                  # ask the engine; a job seen finished is accounted exactly once
    for text in logs(job, follow=True): ...
    cancel(job)

Accounting of a finished job is a signed artifact of kind `job` at JOB_DIR/accounting (files `accounting.json`
and `log-tail.txt`), whose inputs are the artifacts the job read and the artifact it produced — so
`sovforge lineage show` walks from the accounting record to the model and its data. The stage's own manifest is
left untouched: it was signed before the job ended (GPU-seconds are not known yet), and rewriting it would
make a stage run under Ray differ from the same stage run locally. GPU-seconds are allocated GPUs x wall
seconds (what a quota is charged), wall time measured by the runner around the command.

Every submit, refusal, finish and cancel is appended to the serve audit store (`sovforge.serve.store.Store`, the
same `--db` as `sovforge keys`/`audit`): who = the submitter, route = `jobs <event>`, model = the stage or verb,
status = 202 submitted / 403 refused / the exit code at finish / 499 cancelled, guard = the details (job id,
engine, tenant, input ids, output ids, GPU-seconds, reason).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sovforge.artifacts import Artifact, LineageError, build_artifact, load_artifact
from sovforge.classification import max_level
from sovforge.config import load_recipe
from sovforge.jobs import policy
from sovforge.jobs.config import JobSpec, Tenant, TenantsFile
from sovforge.jobs.engine import EngineError, EngineStatus, executor_for
from sovforge.jobs.records import (TERMINAL, JobRecord, all_records, job_dir, load, locked, log_tail,
                                   new_job_id, read_json, save, utc_now)
from sovforge.jobs.runner import RESULT

ACCOUNTING = "accounting"
LOG_TAIL_LINES = 30


class JobsError(Exception):
    """An expected failure of a jobs command (refused, engine down, unknown job); the message is for the user."""


def _what(spec: JobSpec) -> str:
    return spec.stage or (spec.command[0] if spec.command else "recipe")


def audit(event: str, spec: JobSpec, status: int, db: str | None, prefix: str, **detail: Any) -> None:
    from sovforge.serve.store import Store

    store = Store(db, prefix=prefix)
    try:
        store.append(who=spec.submitter, route=f"jobs {event}", model=_what(spec), status=status,
                     guard={"engine": spec.engine, "tenant": spec.tenant, **detail})
    finally:
        store.engine.dispose()


# ---------------------------------------------------------------------------------------------- submit


def held_gpus(tenant: str) -> int:
    """GPUs held by the tenant's unfinished jobs (refreshed; an engine that cannot answer counts as holding)."""
    total = 0
    for record in all_records():
        if record.spec.tenant != tenant or record.terminal:
            continue
        with contextlib.suppress(EngineError, JobsError):
            record = refresh(record)
        if not record.terminal:
            total += record.spec.resources.total_gpus
    return total


def plan(spec: JobSpec) -> tuple[list[Artifact], Any, list[str]]:
    """(input artifacts, data level, where the level comes from) — validates the recipe on the way."""
    if spec.recipe is not None:
        recipe = load_recipe(spec.recipe)
        return policy.recipe_inputs(recipe, spec.stage, spec.cwd)
    return policy.command_inputs(spec.command, spec.cwd)


def submit(spec: JobSpec, tenants: TenantsFile, *, db: str | None = None, prefix: str = "sf_",
           settings: dict[str, Any] | None = None) -> JobRecord:
    """Check the tenant's rules, then hand the job to its engine. Raises policy.Refused (nothing submitted)."""
    tenant: Tenant | None = tenants.tenants.get(spec.tenant)
    if tenant is None:
        raise policy.Refused(f"unknown tenant {spec.tenant!r}; tenants are {', '.join(sorted(tenants.tenants))}")
    inputs, level, reasons = plan(spec)
    reason = policy.check(spec, spec.tenant, tenant, level, reasons, held_gpus(spec.tenant))
    if reason is not None:
        audit("refused", spec, 403, db, prefix, reason=reason, inputs=[a.id for a in inputs],
              data_classification=str(level), gpus=spec.resources.total_gpus)
        raise policy.Refused(reason)
    engine_settings = {**getattr(tenants.engines, spec.engine).model_dump(mode="json"), **(settings or {})}
    job_id = new_job_id()
    job_dir(job_id).mkdir(parents=True, mode=0o700)
    now = utc_now()
    job = JobRecord(id=job_id, spec=spec, argv=[], engine_settings=engine_settings, submitted=now, updated=now,
                    inputs=[a.ref() for a in inputs], data_classification=str(level),
                    tenant_max_classification=tenant.max_classification, audit_db=db, audit_prefix=prefix)
    if spec.recipe is not None:
        shutil.copyfile(spec.recipe, job.dir / "recipe.yaml")  # the job runs this snapshot
    save(job)
    try:
        job.engine_job_id = executor_for(spec.engine, engine_settings).submit(job, tenant)
    except EngineError as exc:
        shutil.rmtree(job.dir, ignore_errors=True)  # nothing reached the engine: leave no record of a job
        raise JobsError(str(exc)) from None
    except BaseException:
        shutil.rmtree(job.dir, ignore_errors=True)  # a record without an engine id would hold quota forever
        raise
    save(job)
    audit("submit", spec, 202, db, prefix, job_id=job.id, engine_job_id=job.engine_job_id,
          inputs=[a.id for a in inputs], data_classification=str(level), gpus=spec.resources.total_gpus,
          command=job.argv)
    return job


# ---------------------------------------------------------------------------------------------- track


def refresh(job: JobRecord) -> JobRecord:
    """Ask the engine for the job's state; account for it once it is finished."""
    if job.terminal and job.accounting_artifact:
        return job
    with locked(job.id):
        job = load(job.id)
        if job.terminal and job.accounting_artifact:
            return job
        status = executor_for(job.spec.engine, job.engine_settings).status(job)
        job.state, job.exit_code = status.state, status.exit_code
        job.message = status.message
        if status.state in TERMINAL:
            finalize(job, status)
        save(job)
    return job


def _outputs(job: JobRecord, started: str | None) -> list[dict[str, Any]]:
    """Artifacts the job produced: the stage entries of the recipe's state.json, or a verb's `--out`."""
    found: list[tuple[str, Path]] = []
    if job.spec.recipe is not None:
        recipe = load_recipe(job.dir / "recipe.yaml")
        state = policy.recipe_state(recipe, job.spec.cwd)
        for stage in [job.spec.stage] if job.spec.stage else recipe.selected_stages():
            if stage in state and "artifact" in state[stage]:
                found.append((stage, Path(state[stage]["artifact"])))
    elif "--out" in job.spec.command[:-1]:
        out = Path(job.spec.command[job.spec.command.index("--out") + 1])
        found.append((job.spec.command[0], out if out.is_absolute() else job.spec.cwd / out))
    outputs = []
    for stage, path in found:
        path = path if path.is_absolute() else job.spec.cwd / path
        try:
            artifact = load_artifact(path)
        except LineageError:
            continue
        created = artifact.manifest.get("created")
        outputs.append({**artifact.ref(), "stage": stage,
                        # A stage whose inputs were unchanged is reused, not rebuilt: say so.
                        "reused": bool(created and started and created[:19] < started[:19])})
    return outputs


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def finalize(job: JobRecord, status: EngineStatus) -> None:
    """Write the signed accounting artifact and the audit record of a finished job (called once, under lock)."""
    result = read_json(job.dir / RESULT) or {}
    started = result.get("started") or status.started
    finished = result.get("finished") or status.finished
    wall = result.get("wall_s")
    if wall is None:
        wall = _seconds_between(started, finished)
    gpus = job.spec.resources.total_gpus
    job.outputs = _outputs(job, started) if status.state == "SUCCEEDED" else []
    tail = log_tail(job.id, LOG_TAIL_LINES)
    if status.state == "FAILED":
        job.message = "\n".join(filter(None, [status.message, tail]))
    over = [o for o in job.outputs if max_level([o["classification"]]) > max_level([job.tenant_max_classification])]
    job.accounting = {
        "job_id": job.id, "engine": job.spec.engine, "engine_job_id": job.engine_job_id, "tenant": job.spec.tenant,
        "submitter": job.spec.submitter, "what": _what(job.spec), "recipe_stage": job.spec.stage,
        "command": job.argv, "state": status.state, "exit_code": status.exit_code,
        "submitted": job.submitted, "started": started, "finished": finished,
        "wall_s": None if wall is None else round(float(wall), 3), "gpus": gpus,
        "gpu_seconds": None if wall is None else round(gpus * float(wall), 3),
        "resources": job.spec.resources.model_dump(mode="json"), "host": result.get("host"),
        "inputs": [ref["id"] for ref in job.inputs], "outputs": [o["id"] for o in job.outputs],
        "data_classification": job.data_classification,
        **({"clearance_violation": [o["id"] for o in over]} if over else {}),
    }
    inputs = []
    for ref in [*job.inputs, *job.outputs]:
        with contextlib.suppress(LineageError):
            inputs.append(load_artifact(ref["path"]))
    with build_artifact(job.dir / ACCOUNTING, kind="job") as staging:
        (staging.path / "accounting.json").write_text(json.dumps(job.accounting, indent=2) + "\n", encoding="utf-8")
        (staging.path / "log-tail.txt").write_text(tail + "\n", encoding="utf-8")
        staging.finish(inputs=inputs, config={"engine": job.spec.engine, "tenant": job.spec.tenant,
                                              "what": _what(job.spec), "resources": job.accounting["resources"]},
                       stats={k: job.accounting[k] for k in ("state", "exit_code", "wall_s", "gpus", "gpu_seconds")})
    job.accounting_artifact = str(job.dir / ACCOUNTING)
    audit("finish", job.spec, status.exit_code if status.exit_code is not None else -1, job.audit_db,
          job.audit_prefix, job_id=job.id, engine_job_id=job.engine_job_id, state=status.state,
          inputs=job.accounting["inputs"], outputs=job.accounting["outputs"], wall_s=job.accounting["wall_s"],
          gpu_seconds=job.accounting["gpu_seconds"], accounting_id=load_artifact(job.dir / ACCOUNTING).id,
          **({"clearance_violation": job.accounting["clearance_violation"]} if over else {}))


def wait(job: JobRecord, timeout_s: float | None = None, poll_s: float = 1.0) -> JobRecord:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = refresh(job)
        if job.terminal:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise JobsError(f"job {job.id} is still {job.state} after {timeout_s:g} s")
        time.sleep(poll_s)


def logs(job: JobRecord, follow: bool = False) -> Iterator[str]:
    yield from executor_for(job.spec.engine, job.engine_settings).logs(job, follow)


def cancel(job: JobRecord, timeout_s: float = 30.0) -> JobRecord:
    """Ask the engine to stop the job, wait for it to stop, and account for it."""
    job = refresh(job)
    if job.terminal:
        raise JobsError(f"job {job.id} already {job.state}")
    executor_for(job.spec.engine, job.engine_settings).cancel(job)
    audit("cancel", job.spec, 499, job.audit_db, job.audit_prefix, job_id=job.id, engine_job_id=job.engine_job_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = refresh(job)
        except EngineError:  # e.g. Kubernetes deleted the Job object: nothing left to ask
            break
        if job.terminal:
            return job
        time.sleep(0.5)
    with locked(job.id):
        job = load(job.id)
        if not job.terminal:
            job.state, job.message = "CANCELLED", "cancel requested; the engine did not confirm within the timeout"
            finalize(job, EngineStatus("CANCELLED", job.exit_code, job.message))
            save(job)
    return job


def find(job_id: str) -> JobRecord:
    try:
        return load(job_id)
    except LookupError as exc:
        raise JobsError(str(exc)) from None
