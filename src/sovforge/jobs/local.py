"""The `local` engine (default): the job runs in a detached subprocess on this machine.

    sovforge jobs submit RECIPE --stage base                  # --engine local is the default

Same isolation as the cluster engines: the runner (`sovforge.jobs.runner`) in its own process session, its own
job directory, log and TMPDIR, the shared job environment (`engine.job_env`), exit code recorded. The engine id
is the runner's pid; its kernel start time is kept too, so a recycled pid is never mistaken for the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from sovforge.jobs.config import Tenant
from sovforge.jobs.engine import (EngineError, EngineStatus, Executor, environ_with, follow_file, job_env,
                                  launch_argv, needs_launcher, python_for, runner_argv, work_argv)
from sovforge.jobs.records import TERMINAL, JobRecord, read_json
from sovforge.jobs.runner import LOG, RESULT, STATUS, write_json

LOCAL = "local.json"


def _proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None when no such live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in (...) may contain spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def status_from_result(result: dict) -> EngineStatus:
    """The runner's result.json → a final status (shared by the engines that see the job directory)."""
    code = int(result.get("exit_code", 1))
    if code == 0:
        state = "SUCCEEDED"
    elif result.get("cancelled"):
        state = "CANCELLED"
    else:
        state = "FAILED"
    message = "" if code == 0 else (f"killed by signal {result['signal']}" if result.get("signal")
                                    else f"exit code {code}")
    return EngineStatus(state, code, message, result.get("started"), result.get("finished"))


class LocalExecutor(Executor):
    name: ClassVar[str] = "local"
    # Popen objects of jobs started by this process: polled so finished children are reaped, not left as zombies.
    _children: ClassVar[dict[str, subprocess.Popen]] = {}

    def submit(self, job: JobRecord, tenant: Tenant) -> str:
        if job.spec.resources.nodes > 1:
            raise EngineError("the local engine runs on one machine; use --engine slurm or kueue for --nodes > 1")
        if job.spec.resources.gpus:
            visible = _local_gpus()
            if visible < job.spec.resources.gpus:
                raise EngineError(f"the local engine: {job.spec.resources.gpus} GPU(s) requested but this machine "
                                  f"has {visible}")
        python = python_for(self.settings)
        work = work_argv(job.spec, python, job.dir / "recipe.yaml")
        job.argv = launch_argv(job.spec, python, work) if needs_launcher(job.spec) else work
        with open(job.dir / "runner.err", "ab") as err:
            proc = subprocess.Popen(runner_argv(python, job.dir, job.argv), cwd=job.spec.cwd,
                                    env=environ_with(job_env(job)), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        self._children[job.id] = proc
        write_json(job.dir / LOCAL, {"pid": proc.pid, "start_ticks": _proc_start_ticks(proc.pid)})
        return str(proc.pid)

    def _alive(self, job: JobRecord) -> bool:
        child = self._children.get(job.id)
        if child is not None:
            return child.poll() is None
        local = read_json(job.dir / LOCAL) or {}
        pid = local.get("pid")
        return bool(pid) and _proc_start_ticks(pid) == local.get("start_ticks")

    def status(self, job: JobRecord) -> EngineStatus:
        result = read_json(job.dir / RESULT)
        if result is not None:
            self._children.pop(job.id, None)
            return status_from_result(result)
        if self._alive(job):
            started = (read_json(job.dir / STATUS) or {}).get("started")
            return EngineStatus("RUNNING" if started else "PENDING", started=started)
        result = read_json(job.dir / RESULT)  # it may have finished between the two looks
        if result is not None:
            return status_from_result(result)
        return EngineStatus("FAILED", None, "the job's runner died without recording a result "
                            "(killed with SIGKILL, or the machine restarted)")

    def logs(self, job: JobRecord, follow: bool = False) -> Iterator[str]:
        return follow_file(job.dir / LOG, lambda: self.status(job).state in TERMINAL, follow)

    def cancel(self, job: JobRecord) -> None:
        local = read_json(job.dir / LOCAL) or {}
        pid = local.get("pid")
        if not pid or not self._alive(job):
            return
        # The runner leads its own session: SIGTERM the group, the runner records the cancel; SIGKILL stragglers.
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._alive(job):
            time.sleep(0.2)
        if self._alive(job):
            os.killpg(pid, signal.SIGKILL)
            if read_json(job.dir / RESULT) is None:  # the runner had no chance to record it: we do
                from sovforge.jobs.runner import utc_now

                started = (read_json(job.dir / STATUS) or {}).get("started")
                write_json(job.dir / RESULT, {"exit_code": 137, "signal": 9, "cancelled": True, "started": started,
                                              "finished": utc_now(), "wall_s": None, "host": os.uname().nodename})


def _local_gpus() -> int:
    """GPUs visible here, without importing torch (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
