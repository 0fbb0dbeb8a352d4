"""The one small interface every engine implements, and the command line all of them run.

    executor = executor_for("ray", settings)
    job.engine_job_id = executor.submit(job, tenant)   # the engine's id; the executor fills job.argv
    executor.status(job)  -> EngineStatus(state, exit_code, message, started, finished)
    executor.logs(job, follow=True)  -> iterator of text chunks
    executor.cancel(job)

Every engine runs the same thing on its worker: `python -m sovforge.jobs.runner JOB_DIR -- <work>`, where
<work> is `python -m sovforge.cli run RECIPE [--only STAGE]` or `python -m sovforge.cli VERB ...`, wrapped in
`accelerate launch` for a multi-GPU adapt. The environment is the same everywhere (`job_env`): offline switches,
$SOVFORGE_HOME (so the worker signs with this installation's key), and pinned thread counts and hash seed so a
CPU stage gives byte-identical artifacts under any engine.
"""

from __future__ import annotations

import abc
import importlib
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sovforge.artifacts import sovforge_home
from sovforge.jobs.config import JobSpec, Tenant
from sovforge.jobs.records import JobRecord, State
from sovforge.offline import OFFLINE_ENV

EXECUTORS = {"local": "sovforge.jobs.local:LocalExecutor", "ray": "sovforge.jobs.ray:RayExecutor",
             "slurm": "sovforge.jobs.slurm:SlurmExecutor", "kueue": "sovforge.jobs.kueue:KueueExecutor"}


class EngineError(RuntimeError):
    """The engine is unreachable, refused the job, or cannot do what was asked; the message is one clear line."""


@dataclass
class EngineStatus:
    """What the engine (and the runner's files) say about a job right now."""

    state: State
    exit_code: int | None = None
    message: str = ""
    started: str | None = None
    finished: str | None = None


class Shell(str):
    """A piece of a command line left unquoted, to be expanded by the shell on the worker (`$SLURM_NODEID`)."""


def shell_join(argv: list[str]) -> str:
    return " ".join(part if isinstance(part, Shell) else shlex.quote(part) for part in argv)


class Executor(abc.ABC):
    """One engine. `settings` is that engine's section of tenants.yaml (as a dict), recorded with each job."""

    name: ClassVar[str]

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    @abc.abstractmethod
    def submit(self, job: JobRecord, tenant: Tenant) -> str:
        """Hand the job to the engine; return the engine's job id. Must fill `job.argv`."""

    @abc.abstractmethod
    def status(self, job: JobRecord) -> EngineStatus:
        """Current state (and, once finished, exit code and times)."""

    @abc.abstractmethod
    def logs(self, job: JobRecord, follow: bool = False) -> Iterator[str]:
        """The job's output so far; with `follow`, keep streaming until it ends."""

    @abc.abstractmethod
    def cancel(self, job: JobRecord) -> None:
        """Ask the engine to stop the job (the runner records the exit)."""


def executor_for(engine: str, settings: dict[str, Any]) -> Executor:
    if engine not in EXECUTORS:
        raise EngineError(f"unknown engine {engine!r}; engines are {', '.join(EXECUTORS)}")
    module_name, cls_name = EXECUTORS[engine].split(":")
    return getattr(importlib.import_module(module_name), cls_name)(settings)


# ----------------------------------------------------------------------------------- the job's command


def job_env(job: JobRecord, home: str | None = None) -> dict[str, str]:
    """Environment of the job on any engine (the spec's own `env` wins)."""
    threads = str(job.spec.resources.cpus)
    return {
        **OFFLINE_ENV,
        "SOVFORGE_HOME": home or str(sovforge_home()),
        # Same thread count and hash seed under every engine: CPU kernels reduce in the same order and
        # set-valued configs (PEFT target_modules) serialise in the same order, so artifact ids repeat.
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "SOVFORGE_JOB_ID": job.id,
        "SOVFORGE_TENANT": job.spec.tenant,
        **job.spec.env,
    }


def work_argv(spec: JobSpec, python: str, recipe_path: str | Path | None) -> list[str]:
    """`python -m sovforge.cli run RECIPE [--only STAGE]` or `python -m sovforge.cli VERB ARGS...`."""
    if spec.recipe is not None:
        return [python, "-m", "sovforge.cli", "run", str(recipe_path), *(["--only", spec.stage] if spec.stage else [])]
    return [python, "-m", "sovforge.cli", *spec.command]


def is_adapt(spec: JobSpec) -> bool:
    return spec.stage == "adapt" or spec.command[:1] == ["adapt"]


def needs_launcher(spec: JobSpec) -> bool:
    """A multi-GPU adapt runs one process per GPU under `accelerate launch`; everything else runs once."""
    return is_adapt(spec) and spec.resources.total_gpus > 1


def launch_argv(spec: JobSpec, python: str, work: list[str], *, machine_rank: str = "0",
                main_process_ip: str | None = None, main_process_port: int = 29500) -> list[str]:
    """`accelerate launch` around the sovforge command: N nodes x G GPUs processes, static rendezvous."""
    res = spec.resources
    argv = [python, "-m", "accelerate.commands.launch"]
    argv += ["--config_file", str(spec.launch_config)] if spec.launch_config else ["--multi_gpu"]
    argv += ["--num_processes", str(res.total_gpus), "--num_machines", str(res.nodes)]
    if res.nodes > 1:
        if main_process_ip is None:
            raise EngineError("a multi-node launch needs the first node's address")
        argv += ["--machine_rank", machine_rank, "--main_process_ip", main_process_ip,
                 "--main_process_port", str(main_process_port)]
    # work = [python, "-m", "sovforge.cli", ...]: accelerate runs the module itself in each process.
    return argv + ["--module", "sovforge.cli", *work[3:]]


def runner_argv(python: str, job_dir: str | Path, argv: list[str]) -> list[str]:
    return [python, "-m", "sovforge.jobs.runner", str(job_dir), "--", *argv]


# ------------------------------------------------------------------------------------ following files


def follow_file(path: Path, finished: Callable[[], bool], follow: bool, poll_s: float = 0.5) -> Iterator[str]:
    """Text of `path` so far; with `follow`, new text as it is written, until `finished()` and nothing is left."""
    offset = 0
    while True:
        if path.is_file():
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if chunk:
                offset += len(chunk)
                yield chunk.decode("utf-8", errors="replace")
                continue
        if not follow or finished():
            # One last read: the job may have written its final lines between our read and finished().
            if path.is_file() and path.stat().st_size > offset:
                continue
            return
        time.sleep(poll_s)


def iso_from_epoch_ms(value: int | float | None) -> str | None:
    if not value:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


def python_for(settings: dict[str, Any]) -> str:
    """The interpreter a worker runs: configured, else the one running now (same path on a shared filesystem)."""
    import sys

    return settings.get("python") or sys.executable


def environ_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
