"""`python -m sovforge.jobs.runner JOB_DIR -- COMMAND...`: the one entry point every engine starts.

Local subprocess, Ray entrypoint, Slurm batch script and Kueue pod all run this, so a job is isolated and
recorded the same way everywhere:

* its own directory JOB_DIR (log.txt, status.json, result.json) and its own TMPDIR: a private directory on the
  worker's local disk (`sovforge-job-<id>-*` under the system temp dir), removed when the command ends — local,
  because unix sockets (multiprocessing managers) neither fit long shared-filesystem paths nor work on NFS;
* the command's stdout and stderr go, unbuffered, both to JOB_DIR/log.txt and to our stdout (which the engine
  keeps as its own log: `ray job logs`, `slurm-%j.out`, `kubectl logs`);
* status.json when the command starts (host, pids); result.json when it ends: exit code, start, end, wall
  seconds — also when the command is killed (SIGTERM from `jobs cancel` is passed on and noted as a cancel).

The runner never decides what a job means; `sovforge.jobs.service` reads these files to account for it.
In an indexed multi-pod job (Kueue multi-node) only index 0 writes log.txt/result.json; the others write
result-<index>.json and log only to stdout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOG = "log.txt"
STATUS = "status.json"
RESULT = "result.json"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write-then-rename, so a reader on a shared filesystem never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(job_dir: Path, command: list[str]) -> int:
    index = os.environ.get("JOB_COMPLETION_INDEX")
    primary = index in (None, "", "0")
    suffix = "" if primary else f"-{index}"
    job_dir.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f"sovforge-job-{job_dir.name}{suffix}-")
    env = {**os.environ, "TMPDIR": scratch, "PYTHONUNBUFFERED": "1"}
    try:
        return _run(job_dir, command, env, primary, suffix)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(job_dir: Path, command: list[str], env: dict[str, str], primary: bool, suffix: str) -> int:
    started, t0 = utc_now(), time.monotonic()
    log = open(job_dir / LOG, "ab") if primary else None
    cancelled = {"signal": None}
    try:
        # Same process group as the runner: an engine that kills the group (Ray stop, scancel) kills both.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    except OSError as exc:
        message = f"sovforge job runner: cannot start {command[0]!r}: {exc}\n".encode()
        if log:
            log.write(message)
            log.close()
        sys.stdout.buffer.write(message)
        write_json(job_dir / f"result{suffix}.json", {
            "exit_code": 127, "signal": None, "cancelled": False, "started": started, "finished": utc_now(),
            "wall_s": 0.0, "host": socket.gethostname()})
        return 127

    def forward(signum: int, _frame: Any) -> None:
        cancelled["signal"] = signum
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    write_json(job_dir / f"status{suffix}.json", {"state": "RUNNING", "started": started,
                                                   "host": socket.gethostname(), "runner_pid": os.getpid(),
                                                   "command_pid": proc.pid, "command": command,
                                                   "tmpdir": env["TMPDIR"]})
    assert proc.stdout is not None
    # read1: forward whatever arrived (tqdm redraws end in \r, not \n) instead of waiting for full lines.
    while chunk := proc.stdout.read1(1 << 16):
        if log:
            log.write(chunk)
            log.flush()
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    returncode = proc.wait()
    if log:
        log.close()
    wall = time.monotonic() - t0
    exit_code = returncode if returncode >= 0 else 128 - returncode  # killed by signal N → 128+N, as a shell says
    write_json(job_dir / f"result{suffix}.json", {
        "exit_code": exit_code, "signal": -returncode if returncode < 0 else None,
        "cancelled": cancelled["signal"] is not None, "started": started, "finished": utc_now(),
        "wall_s": round(wall, 3), "host": socket.gethostname()})
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m sovforge.jobs.runner JOB_DIR -- COMMAND...\n")
        return 2
    return run(Path(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main())
