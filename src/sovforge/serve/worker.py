"""`sovforge serve MODEL --backend transformers-process`: the transformers batcher in its own process.

In-process, the model's decoding loop and the gateway (HTTP, auth, guard, SSE, audit) share one Python interpreter,
and so one GIL: when the model keeps a core busy, every request also waits for the gateway work of the requests
ahead of it (bench/RESULTS.md measured added p50 ≈ clients × gateway CPU per request). Here the model runs in a
child process with its own interpreter, as vLLM's engine core runs beside its API server. The gateway keeps the
tokenizer, so token counts, quotas and the guard are the same code as in-process. It also keeps the audit log, so a
crash of the model process cannot lose an audit record, and the gateway answers 503 with the reason.

Wire: the child's stdin and stdout, frames of a 4-byte big-endian length and a JSON object (no pickle, no port).
  gateway → worker  {"op": "gen", "id", "prompt", "max_tokens", "temperature", "top_p", "seed", "ignore_eos"}
                    {"op": "score", "id", "rows", "top_n"} · {"op": "cancel", "id"}
  worker → gateway  {"op": "ready", "max_positions", "vocab_size", "device"} first, then
                    {"op": "out", "batches", "items": [[id, "t", token] | [id, "end"] | [id, "score", rows]
                                                       | [id, "err", "ValueError"|"BackendError", message]]}
One "out" frame per hand-over of the batcher, which is one per decoding step for the whole batch, not one per token.
The child's stderr (its log lines) goes to a file whose tail is quoted when it fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from sovforge.serve.backend import (_END, BackendError, BatcherClient, Job, RowScore, ScoreJob,
                                    TransformersBackend, _deliver, _Work)

_HEADER = struct.Struct(">I")
log = logging.getLogger("sovforge.serve")


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    body = stream.read(_HEADER.unpack(header)[0])
    return json.loads(body)


# ------------------------------------------------------------------------------------------------ the child process
class _FrameSink:
    """Stands in for an event loop in `backend._deliver`: each hand-over of the batcher becomes one "out" frame."""

    def __init__(self, backend: TransformersBackend, out: BinaryIO, jobs: dict[int, _Work]):
        self.backend, self.out, self.jobs, self.lock = backend, out, jobs, threading.Lock()

    def call_soon_threadsafe(self, _callback: Any, pairs: list[tuple[_Work, Any]]) -> None:
        items = []
        for work, item in pairs:
            wire = work.wire_id  # type: ignore[attr-defined]
            if item is _END:
                items.append([wire, "end"])
            elif isinstance(item, BaseException):
                kind = "ValueError" if isinstance(item, ValueError) else "BackendError"
                items.append([wire, "err", kind, str(item) or type(item).__name__])
            elif isinstance(work, ScoreJob):
                items.append([wire, "score", [asdict(row) for row in item]])
            else:
                items.append([wire, "t", item])
                continue
            self.jobs.pop(wire, None)
        with self.lock:
            write_frame(self.out, {"op": "out", "batches": self.backend.batches_run, "items": items})


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovforge.serve.worker", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--device")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args(argv)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the wire: stray prints go to the log
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = TransformersBackend(args.model, device=args.device, max_batch_size=args.max_batch_size,
                                  batch_wait_ms=args.batch_wait_ms)
    jobs: dict[int, _Work] = {}
    sink = _FrameSink(backend, stdout, jobs)
    with sink.lock:
        write_frame(stdout, {"op": "ready", "max_positions": backend.max_positions, "vocab_size": backend.vocab_size,
                             "device": str(backend.device)})
    while (message := read_frame(stdin)) is not None:
        op, wire = message["op"], message["id"]
        if op == "cancel":
            if (work := jobs.get(wire)) is not None:
                work.cancelled = True
            continue
        if op == "gen":
            work = Job(prompt_ids=message["prompt"], max_tokens=message["max_tokens"],
                       temperature=message["temperature"], top_p=message["top_p"], seed=message["seed"],
                       ignore_eos=message["ignore_eos"])
        else:
            work = ScoreJob(rows=message["rows"], top_n=message["top_n"])
        work.wire_id, work.loop = wire, sink  # type: ignore[attr-defined, assignment]
        jobs[wire] = work
        try:
            if isinstance(work, Job):
                backend._check_room(work)
            backend.queue.put(work)
        except ValueError as exc:
            sink.call_soon_threadsafe(None, [(work, exc)])
    backend.close()  # stdin closed: the gateway is gone or closing
    return 0


# ------------------------------------------------------------------------------------------------ the gateway side
class ProcessBackend(BatcherClient):
    """The interface of `TransformersBackend` (encode/decode/stream/submit/score/close) over a child process."""

    name = "transformers-process"

    def __init__(self, model_path: Path, *, device: str | None = None, max_batch_size: int = 8,
                 batch_wait_ms: float = 5.0, threads: int | None = None, startup_timeout_s: float = 600.0):
        from sovforge.model.loading import load_tokenizer

        self.tokenizer = load_tokenizer(model_path)
        self.batches_run, self.dead, self._closing = 0, None, False
        self._pending: dict[int, _Work] = {}
        self._next_id, self._lock = 0, threading.Lock()
        command = [sys.executable, "-m", "sovforge.serve.worker", str(model_path), "--max-batch-size",
                   str(max_batch_size), "--batch-wait-ms", str(batch_wait_ms)]
        command += ["--device", device] if device else []
        command += ["--threads", str(threads)] if threads else []
        handle, name = tempfile.mkstemp(prefix="sovforge-worker-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(handle, "wb") as log_file:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                            start_new_session=True)
        self.worker_pid = self.process.pid
        self._ready: dict[str, Any] = {}
        self._started = threading.Event()
        self.reader = threading.Thread(target=self._read, name="sovforge-worker-reader", daemon=True)
        self.reader.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self._started.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BackendError(f"the model process did not start ({self._why()})")
        if self.dead is not None:
            self.close()
            raise BackendError(f"the model process did not start ({self._why()})")
        self.max_positions, self.vocab_size = self._ready["max_positions"], self._ready["vocab_size"]
        self.device = self._ready["device"]

    def _why(self) -> str:
        code = self.process.poll()
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        state = "still running" if code is None else f"exit code {code}"
        return f"{state}; last lines of {self.log_path}:\n" + "\n".join(tail)

    # ---------------------------------------------------------------------------------- wire
    def _read(self) -> None:
        """Reader thread: frames from the child, handed to their consumers (one wake-up per event loop per frame)."""
        while (message := read_frame(self.process.stdout)) is not None:
            if message["op"] == "ready":
                self._ready = message
                self._started.set()
                continue
            self.batches_run = message["batches"]
            pairs: list[tuple[_Work, Any]] = []
            for wire, kind, *rest in message["items"]:
                work = self._pending.get(wire)
                if work is None:
                    continue
                if kind == "t":
                    pairs.append((work, rest[0]))
                    continue
                del self._pending[wire]  # its last item
                if kind == "end":
                    pairs.append((work, _END))
                elif kind == "score":
                    pairs.append((work, [RowScore(**row) for row in rest[0]]))
                else:  # "err": the exception the batcher raised, as the in-process backend would raise it
                    pairs.append((work, (ValueError if rest[0] == "ValueError" else BackendError)(rest[1])))
            _deliver(pairs)
        self.process.wait()
        if self._started.is_set() and not self._closing:  # callers get the exit code; the log gets the last lines
            log.error("model process ended", extra={"fields": {"detail": self._why()[-2000:]}})
        self.dead = BackendError(f"the model process ended (exit code {self.process.returncode})")
        self._started.set()
        with self._lock:
            orphans, self._pending = list(self._pending.values()), {}
        _deliver([(work, self.dead) for work in orphans])

    def _send(self, work: _Work, message: dict[str, Any]) -> None:
        with self._lock:
            if self.dead is not None:
                raise self.dead
            wire = self._next_id = self._next_id + 1
            work.wire_id = wire  # type: ignore[attr-defined]
            self._pending[wire] = work
            try:
                write_frame(self.process.stdin, {**message, "id": wire})
            except (BrokenPipeError, ValueError, OSError) as exc:
                self._pending.pop(wire, None)
                raise BackendError(f"the model process is gone ({exc})") from None

    def _abandon(self, work: _Work) -> None:
        """The consumer stopped listening (finished, client gone, timeout): the child drops the row at its next step."""
        wire = getattr(work, "wire_id", None)
        with self._lock:
            if wire in self._pending and self.dead is None:
                try:
                    write_frame(self.process.stdin, {"op": "cancel", "id": wire})
                except (BrokenPipeError, ValueError, OSError):
                    pass

    def _enqueue(self, work: Job | ScoreJob) -> None:
        if isinstance(work, ScoreJob):
            self._send(work, {"op": "score", "rows": work.rows, "top_n": work.top_n})
        else:
            self._send(work, {"op": "gen", "prompt": list(work.prompt_ids), "max_tokens": work.max_tokens,
                              "temperature": work.temperature, "top_p": work.top_p, "seed": work.seed,
                              "ignore_eos": work.ignore_eos})

    def queue_depth(self) -> int:
        """Requests in the model process (queued or being generated)."""
        return len(self._pending)

    def close(self) -> None:
        """Close the child's stdin (it finishes and exits); SIGTERM, then SIGKILL, if it does not."""
        process, self._closing = self.process, True
        if process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self.reader.join(timeout=10)


if __name__ == "__main__":
    sys.exit(worker_main())
