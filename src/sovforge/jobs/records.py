"""Job records: one directory per job under `$SOVFORGE_HOME/jobs/<job id>/`, plain files you can `cat`.

    job.json      this record: spec, engine job id, state, inputs, outputs, accounting (rewritten atomically)
    recipe.yaml   the recipe as submitted (the job runs this snapshot, not the file you may edit later)
    log.txt       the job's output       ┐
    status.json   written at its start   ├ by `sovforge.jobs.runner` on the worker (a shared filesystem)
    result.json   exit code, wall time   ┘
    job.sbatch / manifests.yaml          what was handed to Slurm / Kubernetes
    accounting/   the signed `job` artifact: GPU-seconds, wall time, engine, tenant, inputs → output
(The job's TMPDIR is a private directory on the worker's local disk, removed when it ends: see the runner.)

Files rather than a database because the worker writes its half (log, result) on a shared filesystem where
no database server is reachable, and because each job stays self-contained when copied for an audit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from sovforge._config_base import StrictModel
from sovforge.artifacts import sovforge_home
from sovforge.jobs.config import JobSpec

State = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
RECORD = "job.json"


class JobNotFound(LookupError):
    """No job record with that id."""


class JobRecord(StrictModel):
    """What sovforge knows about one job."""

    id: str
    """sovforge's job id (also Ray's submission id, part of the Slurm/Kubernetes job name)."""
    spec: JobSpec
    """The request as submitted."""
    argv: list[str] = Field(default_factory=list)
    """The exact command the runner executes on the worker (filled by the engine's executor)."""
    engine_job_id: str | None = None
    """The engine's own id (Ray submission id, Slurm job id, `namespace/name` in Kubernetes, local pid)."""
    engine_settings: dict[str, Any] = Field(default_factory=dict)
    """Engine connection settings used at submit time, so status/cancel work without the tenants file."""
    state: State = "PENDING"
    """PENDING → RUNNING → SUCCEEDED | FAILED | CANCELLED."""
    exit_code: int | None = None
    """The command's exit code once finished (128+N when killed by signal N)."""
    message: str = ""
    """Why it failed or what the engine said (for a failure: the log tail)."""
    submitted: str
    """When sovforge handed it to the engine (UTC)."""
    updated: str
    """When this record last changed (UTC)."""
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    """Artifacts the job reads, known at submit time: {id, path, kind, classification}."""
    data_classification: str = "UNCLASSIFIED"
    """Highest classification of data the job may process (what the tenant's clearance was checked against)."""
    tenant_max_classification: str = "UNCLASSIFIED"
    """The tenant's clearance at submit time (an output above it is flagged in the accounting)."""
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    """Artifacts the job produced: {stage, id, path, kind, classification, reused}."""
    accounting: dict[str, Any] | None = None
    """GPU-seconds, wall time, start/end once finished (also in the signed accounting artifact)."""
    accounting_artifact: str | None = None
    """Path of the signed `job` artifact written when the job finished."""
    audit_db: str | None = None
    """Audit store URL (`--db`) the submit was logged to; finish/cancel are logged to the same one."""
    audit_prefix: str = "sf_"
    """Audit store table prefix."""

    @property
    def dir(self) -> Path:
        return job_dir(self.id)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def jobs_root() -> Path:
    root = sovforge_home() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def job_dir(job_id: str) -> Path:
    return jobs_root() / job_id


def new_job_id() -> str:
    """`YYYYmmdd-HHMMSS-xxxxxx`: sortable by time, unique, and a valid Kubernetes/Slurm name part."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def save(record: JobRecord) -> None:
    record.updated = utc_now()
    path = record.dir / RECORD
    tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load(job_id: str) -> JobRecord:
    path = job_dir(job_id) / RECORD
    if not path.is_file():
        # Accept a unique prefix, as git does for commits.
        matches = [p.name for p in jobs_root().iterdir() if p.name.startswith(job_id) and (p / RECORD).is_file()]
        if len(matches) != 1:
            raise JobNotFound(f"no job {job_id!r} under {jobs_root()}" if not matches
                              else f"job id {job_id!r} is ambiguous: {', '.join(sorted(matches))}")
        path = job_dir(matches[0]) / RECORD
    return JobRecord.model_validate_json(path.read_text(encoding="utf-8"))


def all_records() -> Iterator[JobRecord]:
    for path in sorted(jobs_root().glob(f"*/{RECORD}")):
        with contextlib.suppress(ValueError, OSError):
            yield JobRecord.model_validate_json(path.read_text(encoding="utf-8"))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


@contextlib.contextmanager
def locked(job_id: str) -> Iterator[None]:
    """One updater of a job record at a time (two `jobs status` calls must not finalize a job twice)."""
    with open(job_dir(job_id) / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(job_id: str, lines: int = 20) -> str:
    """Last `lines` lines of the job's log (carriage-return progress redraws collapsed)."""
    path = job_dir(job_id) / "log.txt"
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    # A tqdm bar redraws with \r: keep only what was last drawn on each line.
    cleaned = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join([line for line in cleaned if line.strip()][-lines:])
