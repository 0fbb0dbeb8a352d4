"""The `slurm` engine: one generated `sbatch` script per job, submitted with `sbatch` or slurmrestd (JWT).

    sovforge jobs submit RECIPE --stage adapt --engine slurm --gpus 8 --nodes 2 --cpus 32 --memory-gb 512

The script (`render_sbatch`, kept as JOB_DIR/job.sbatch) asks for nodes, GPUs per node (`--gres=gpu:N`), CPUs,
memory, time and partition, charges the tenant's account, and runs the shared runner command. A multi-node
adapt runs `srun` with one task per node, each starting `accelerate launch` with its rank from $SLURM_NODEID
and the rendezvous on the first host of $SLURM_JOB_NODELIST (`scontrol show hostnames`).

With `restd_url` set, the job goes to slurmrestd instead (`POST /slurm/<ver>/job/submit`, headers
X-SLURM-USER-NAME / X-SLURM-USER-TOKEN; the token from $SLURM_JWT or `jwt_file`, never logged). slurmrestd does
not read `#SBATCH` lines, so the same options travel as the job descriptor (`restd_descriptor`). Tested against
Slurm 22.05's slurmrestd (OpenAPI v0.0.38); later versions changed the descriptor's shape and are refused.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from sovforge.jobs.config import Tenant, time_limit_seconds
from sovforge.jobs.engine import (EngineError, EngineStatus, Executor, Shell, follow_file, job_env, launch_argv,
                                  needs_launcher, python_for, runner_argv, shell_join, work_argv)
from sovforge.jobs.local import status_from_result
from sovforge.jobs.records import TERMINAL, JobRecord, read_json
from sovforge.jobs.runner import LOG, RESULT

SUPPORTED_RESTD = ("v0.0.38",)
# Slurm job states → ours (squeue/scontrol spelling; a trailing '+' or reason is stripped before lookup).
_STATES = {"PENDING": "PENDING", "CONFIGURING": "PENDING", "REQUEUED": "PENDING", "RESV_DEL_HOLD": "PENDING",
           "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "SUSPENDED": "RUNNING", "STAGE_OUT": "RUNNING",
           "COMPLETED": "SUCCEEDED", "CANCELLED": "CANCELLED"}  # everything else (FAILED, TIMEOUT, OOM...) = FAILED


def job_name(job: JobRecord) -> str:
    what = job.spec.stage or (job.spec.command[0] if job.spec.command else "recipe")
    return f"sovforge-{what}-{job.id}"


def slurm_argv(job: JobRecord, python: str, port: int) -> list[str]:
    """The command the batch step runs under the runner (with srun + accelerate for a multi-node adapt)."""
    work = work_argv(job.spec, python, job.dir / "recipe.yaml")
    if not needs_launcher(job.spec):
        return work
    res = job.spec.resources
    if res.nodes == 1:
        return launch_argv(job.spec, python, work)
    launch = launch_argv(job.spec, python, work, machine_rank=Shell('"$SLURM_NODEID"'),
                         main_process_ip=Shell('"$MASTER_ADDR"'), main_process_port=port)
    # One launcher per node; each spawns one process per GPU. --kill-on-bad-exit: one rank dying ends all.
    return ["srun", f"--nodes={res.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            "bash", "-c", shell_join(launch)]


def render_sbatch(job: JobRecord, tenant: Tenant, settings: dict[str, Any]) -> str:
    """The sbatch script for `job` (what `sbatch --parsable` gets; also `sovforge jobs render --engine slurm`)."""
    spec, res = job.spec, job.spec.resources
    python = python_for(settings)
    port = int(settings.get("main_process_port") or 29500)
    job.argv = slurm_argv(job, python, port)
    partition = res.partition or settings.get("partition")
    recipe = spec.recipe
    if recipe is not None and recipe.is_relative_to(spec.cwd):
        recipe = recipe.relative_to(spec.cwd)
    what = f"stage {spec.stage} of {recipe}" if spec.stage else (
        f"recipe {recipe}" if recipe else f"sovforge {' '.join(spec.command[:2])}")
    lines = [
        "#!/bin/bash",
        f"# sovforge job {job.id}: {what}, tenant {spec.tenant}, submitted by {spec.submitter}.",
        "# Rendered by sovforge (`jobs submit|render --engine slurm`): Slurm schedules it, sovforge only describes it.",
        f"#SBATCH --job-name={job_name(job)}",
        f"#SBATCH --account={tenant.slurm_account}",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        f"#SBATCH --nodes={res.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={res.cpus}",
        *([f"#SBATCH --gres=gpu:{res.gpus}"] if res.gpus else []),
        f"#SBATCH --mem={math.ceil(res.memory_gb * 1024)}M",
        f"#SBATCH --time={res.time_limit}",
        f"#SBATCH --chdir={spec.cwd}",
        f"#SBATCH --output={job.dir}/slurm-%j.out",
        f"#SBATCH --comment=sovforge:{job.id}",
        *(f"#SBATCH {directive}" for directive in settings.get("extra_directives") or []),
        "set -euo pipefail",
        "# The same environment under every engine: offline, this installation's key, pinned threads.",
        *(f"export {key}={shlex.quote(value)}" for key, value in sorted(job_env(job).items())),
    ]
    if needs_launcher(spec) and res.nodes > 1:
        lines += [
            "# Rendezvous of the multi-node launch: the first host of the allocation.",
            'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            f"export MASTER_ADDR MASTER_PORT={port}",
        ]
    lines.append(f"exec {shell_join(runner_argv(python, job.dir, job.argv))}")
    return "\n".join(lines) + "\n"


def restd_descriptor(job: JobRecord, tenant: Tenant, settings: dict[str, Any]) -> dict[str, Any]:
    """The v0.0.38 job descriptor carrying what the script's #SBATCH lines say (slurmrestd ignores those)."""
    spec, res = job.spec, job.spec.resources
    partition = res.partition or settings.get("partition")
    descriptor: dict[str, Any] = {
        "name": job_name(job), "account": tenant.slurm_account, "nodes": [res.nodes, res.nodes],
        "tasks_per_node": 1, "tasks": res.nodes, "cpus_per_task": res.cpus,
        "memory_per_node": math.ceil(res.memory_gb * 1024),
        "time_limit": math.ceil(time_limit_seconds(res.time_limit) / 60),
        "current_working_directory": str(spec.cwd), "standard_output": f"{job.dir}/slurm-%j.out",
        "comment": f"sovforge:{job.id}",
        # Slurm's own PATH lookup needs one; the script exports everything else.
        "environment": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **job_env(job)},
    }
    if partition:
        descriptor["partition"] = partition
    if res.gpus:
        descriptor["gres"] = f"gpu:{res.gpus}"
    return descriptor


def _local_time(value: str | None) -> str | None:
    """scontrol prints the controller's local time without a zone; store UTC ISO like everything else."""
    if not value or value in ("Unknown", "None", "N/A"):
        return None
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    except ValueError:
        return None


class SlurmExecutor(Executor):
    name: ClassVar[str] = "slurm"

    # ------------------------------------------------------------------------------------- commands
    def _run(self, argv: list[str], what: str) -> str:
        if shutil.which(argv[0]) is None:
            raise EngineError(f"`{argv[0]}` is not installed here; install the Slurm client or set "
                              "engines.slurm.restd_url to submit through slurmrestd")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise EngineError(f"{what}: `{' '.join(argv[:2])}` did not answer within 60 s (slurmctld down?)") from None
        if done.returncode != 0:
            raise EngineError(f"{what}: {(done.stderr or done.stdout).strip() or f'exit code {done.returncode}'}")
        return done.stdout

    # ------------------------------------------------------------------------------------- slurmrestd
    def _restd(self, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        version = self.settings.get("restd_api_version") or "v0.0.38"
        if version not in SUPPORTED_RESTD:
            raise EngineError(f"slurmrestd API {version} is not supported (tested: {', '.join(SUPPORTED_RESTD)}); "
                              "leave restd_url unset to submit with sbatch")
        token = os.environ.get(self.settings.get("jwt_env") or "SLURM_JWT")
        if self.settings.get("jwt_file"):
            token = Path(self.settings["jwt_file"]).read_text(encoding="utf-8").strip()
        if not token:
            raise EngineError("slurmrestd needs a JWT: export SLURM_JWT=$(scontrol token ...) or set "
                              "engines.slurm.jwt_file")
        token = token.removeprefix("SLURM_JWT=")
        url = f"{self.settings['restd_url'].rstrip('/')}/slurm/{version}{path}"
        headers = {"X-SLURM-USER-NAME": self.settings.get("restd_user") or user, "X-SLURM-USER-TOKEN": token}
        try:
            response = httpx.request(method, url, json=body, headers=headers, timeout=15)
        except httpx.HTTPError as exc:
            raise EngineError(f"slurmrestd at {self.settings['restd_url']} is unreachable: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            raise EngineError(f"slurmrestd answered {response.status_code}: {response.text.strip()[:200]}") from None
        errors = [e.get("description") or e.get("error") for e in payload.get("errors") or []]
        if response.status_code >= 400 or errors:
            raise EngineError(f"slurmrestd: {'; '.join(filter(None, errors)) or response.status_code}")
        return payload

    # ------------------------------------------------------------------------------------- interface
    def submit(self, job: JobRecord, tenant: Tenant) -> str:
        if not tenant.slurm_account:
            raise EngineError(f"tenant {job.spec.tenant} has no slurm_account in the tenants file")
        script = render_sbatch(job, tenant, self.settings)
        (job.dir / "job.sbatch").write_text(script, encoding="utf-8")
        if self.settings.get("restd_url"):
            payload = self._restd("POST", "/job/submit", job.spec.submitter,
                                  {"script": script, "job": restd_descriptor(job, tenant, self.settings)})
            return str(payload["job_id"])
        # --parsable prints "jobid" or "jobid;cluster".
        return self._run(["sbatch", "--parsable", str(job.dir / "job.sbatch")], "sbatch").strip().split(";")[0]

    def _engine_state(self, job: JobRecord) -> EngineStatus | None:
        """What slurmctld says, or None once it has forgotten the job (after MinJobAge)."""
        if self.settings.get("restd_url"):
            try:
                found = self._restd("GET", f"/job/{job.engine_job_id}", job.spec.submitter)["jobs"]
            except EngineError as exc:
                if "Invalid job id" in str(exc):
                    return None
                raise
            info = found[0]
            raw, code = str(info.get("job_state", "")), info.get("exit_code")
            started = dt.datetime.fromtimestamp(info["start_time"], dt.timezone.utc).isoformat() \
                if info.get("start_time") else None
            finished = dt.datetime.fromtimestamp(info["end_time"], dt.timezone.utc).isoformat() \
                if info.get("end_time") and raw not in ("PENDING", "RUNNING") else None
            reason = str(info.get("state_reason") or "")
        else:
            try:
                out = self._run(["scontrol", "show", "job", "-o", str(job.engine_job_id)], "scontrol")
            except EngineError as exc:
                if "Invalid job id" in str(exc):
                    return None
                raise
            fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
            raw = fields.get("JobState", "")
            code = int(fields.get("ExitCode", "0:0").split(":")[0])
            started, finished = _local_time(fields.get("StartTime")), _local_time(fields.get("EndTime"))
            reason = fields.get("Reason", "")
        state = _STATES.get(raw.rstrip("+"), "FAILED")
        message = "" if state in ("PENDING", "RUNNING", "SUCCEEDED") else f"Slurm state {raw} ({reason})"
        if state == "PENDING" and reason not in ("", "None"):
            message = f"pending: {reason}"
        return EngineStatus(state, code if state in TERMINAL else None, message, started,
                            finished if state in TERMINAL else None)

    def status(self, job: JobRecord) -> EngineStatus:
        engine = self._engine_state(job)
        result = read_json(job.dir / RESULT)
        if engine is None:
            if result is not None:  # slurmctld forgot the job; the runner's record on the shared FS remains
                return status_from_result(result)
            return EngineStatus("FAILED", None, f"Slurm no longer knows job {job.engine_job_id} and it left no "
                                "result (it never started, or the job directory is not on a shared filesystem)")
        if engine.state in TERMINAL and result is not None and engine.state != "CANCELLED":
            precise = status_from_result(result)
            if engine.state == "FAILED" and precise.state == "SUCCEEDED":
                return engine  # e.g. TIMEOUT after the command finished its work: trust the scheduler
            precise.message = engine.message or precise.message
            precise.state = engine.state if engine.state == "FAILED" else precise.state
            return precise
        return engine

    def logs(self, job: JobRecord, follow: bool = False) -> Iterator[str]:
        return follow_file(job.dir / LOG, lambda: self.status(job).state in TERMINAL, follow)

    def cancel(self, job: JobRecord) -> None:
        if self.settings.get("restd_url"):
            # Like scancel: slurmd turns the kill into SIGTERM, KillWait, SIGKILL, so the runner records the exit.
            self._restd("DELETE", f"/job/{job.engine_job_id}", job.spec.submitter)
        else:
            self._run(["scancel", str(job.engine_job_id)], "scancel")
