"""The `ray` engine: Ray Job Submission (`ray.job_submission.JobSubmissionClient`) against an existing cluster.

    sovforge jobs submit RECIPE --stage adapt --engine ray --gpus 1 --address http://127.0.0.1:8265

The entrypoint is the shared runner command (`engine.runner_argv`) in the submitter's working directory, with
`entrypoint_num_gpus`/`entrypoint_num_cpus`/`entrypoint_memory` reserving what the job asked for. The
`runtime_env` carries environment variables only — no `pip`, no `conda`, no `working_dir` upload: the workers
already have this installation (air-gapped) and the artifacts live on a shared filesystem. RAY_NAMESPACE is the
tenant's namespace, so any Ray driver the stage starts lands there.

The dashboard address is probed with a plain TCP connect first (`connect_timeout_s`), because the Ray client
itself waits without a timeout: an unreachable head gives a clear error in seconds, not a hang. A head with Ray
token authentication gets its token as `Authorization: Bearer` (`auth_token_file`, else Ray's own lookup). Multi-node
training on Ray would need Ray Train; a multi-node job is refused with that reason (use slurm or kueue).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from sovforge.jobs.config import Tenant
from sovforge.jobs.engine import (EngineError, EngineStatus, Executor, iso_from_epoch_ms, job_env, launch_argv,
                                  needs_launcher, python_for, runner_argv, shell_join, work_argv)
from sovforge.jobs.local import status_from_result
from sovforge.jobs.records import JobRecord, read_json
from sovforge.jobs.runner import RESULT

# Ray JobStatus → ours. STOPPED is what `stop_job` leads to.
_STATES = {"PENDING": "PENDING", "RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED",
           "STOPPED": "CANCELLED"}


def probe(address: str, timeout_s: float) -> None:
    """Raise EngineError unless a TCP connection to the dashboard opens within `timeout_s`."""
    url = urlparse(address if "://" in address else f"http://{address}")
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 8265)
    if not host:
        raise EngineError(f"Ray address {address!r} has no host; give e.g. http://127.0.0.1:8265")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except OSError as exc:  # refused, unreachable, or the offline guard (which names --allow-network)
        reason = str(exc) or type(exc).__name__
    raise EngineError(f"Ray dashboard at {address} is unreachable ({reason}); is `ray start --head "
                      f"--dashboard-host ...` running there, and is the address the dashboard's HTTP port?")


class RayExecutor(Executor):
    name: ClassVar[str] = "ray"

    @property
    def address(self) -> str:
        return self.settings.get("address") or "http://127.0.0.1:8265"

    def _token(self) -> str | None:
        """The cluster's auth token: the configured file, else Ray's own lookup. Never logged or recorded."""
        configured = self.settings.get("auth_token_file")
        if configured:
            path = Path(configured).expanduser()
            if not path.is_file():
                raise EngineError(f"Ray auth token file {configured} does not exist")
            return path.read_text(encoding="utf-8").strip() or None
        if os.environ.get("RAY_AUTH_TOKEN"):
            return os.environ["RAY_AUTH_TOKEN"].strip()
        # A token file found lying around is offered only where Ray itself would (RAY_AUTH_MODE=token) or to a
        # head on this machine, never to some other cluster.
        host = urlparse(self.address if "://" in self.address else f"http://{self.address}").hostname or ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token" and host not in ("127.0.0.1", "localhost", "::1"):
            return None
        for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
            if path and Path(path).expanduser().is_file():
                return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
        return None

    def client(self) -> Any:
        probe(self.address, float(self.settings.get("connect_timeout_s") or 3.0))
        try:
            from ray.exceptions import AuthenticationError
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise EngineError("the ray engine needs Ray's job SDK: pip install 'sovforge[dist]'") from None
        token = self._token()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            return JobSubmissionClient(self.address, headers=headers)
        except (ConnectionError, RuntimeError, ValueError, AuthenticationError) as exc:
            message = str(exc).split("\n")[0]
            if "Authentication" in message:
                message += (" — the head uses Ray token authentication; set engines.ray.auth_token_file "
                            "(or $RAY_AUTH_TOKEN) to its token")
            raise EngineError(f"Ray at {self.address}: {message}") from None

    def submit(self, job: JobRecord, tenant: Tenant) -> str:
        res = job.spec.resources
        if res.nodes > 1:
            raise EngineError("multi-node jobs on Ray would need Ray Train; submit them with --engine slurm or kueue")
        python = python_for(self.settings)
        work = work_argv(job.spec, python, job.dir / "recipe.yaml")
        job.argv = launch_argv(job.spec, python, work) if needs_launcher(job.spec) else work
        entrypoint = f"cd {shlex.quote(str(job.spec.cwd))} && exec {shell_join(runner_argv(python, job.dir, job.argv))}"
        runtime_env = {"env_vars": {**job_env(job), "RAY_NAMESPACE": tenant.ray_namespace or job.spec.tenant}}
        client = self.client()
        try:
            return client.submit_job(
                entrypoint=entrypoint, submission_id=job.id, runtime_env=runtime_env,
                entrypoint_num_cpus=res.cpus, entrypoint_num_gpus=res.gpus,
                entrypoint_memory=int(res.memory_gb * 2**30),
                metadata={"sovforge_job": job.id, "tenant": job.spec.tenant, "submitter": job.spec.submitter,
                          "stage": job.spec.stage or (job.spec.command[0] if job.spec.command else "recipe")})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"Ray at {self.address} refused the job: {exc}") from None

    def status(self, job: JobRecord) -> EngineStatus:
        info = self.client().get_job_info(job.engine_job_id)
        state = _STATES.get(str(getattr(info.status, "value", info.status)), "FAILED")
        status = EngineStatus(state, getattr(info, "driver_exit_code", None), info.message or "",
                              iso_from_epoch_ms(info.start_time), iso_from_epoch_ms(info.end_time))
        result = read_json(job.dir / RESULT)
        if result is not None and state in ("SUCCEEDED", "FAILED"):
            # The runner saw the command itself: its exit code and times are the precise ones.
            precise = status_from_result(result)
            precise.message = precise.message or status.message
            return precise
        return status

    def logs(self, job: JobRecord, follow: bool = False) -> Iterator[str]:
        client = self.client()
        if not follow:
            yield client.get_job_logs(job.engine_job_id)
            return
        stream = client.tail_job_logs(job.engine_job_id)  # an async generator over the dashboard's websocket
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(stream.aclose())
            loop.close()

    def cancel(self, job: JobRecord) -> None:
        try:
            self.client().stop_job(job.engine_job_id)
        except RuntimeError as exc:
            raise EngineError(f"Ray at {self.address} could not stop {job.engine_job_id}: {exc}") from None
