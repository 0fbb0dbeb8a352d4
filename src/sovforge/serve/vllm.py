"""vLLM backend for `sovforge serve MODEL --backend vllm`: a `vllm serve` subprocess bound to loopback, spoken to over
HTTP (httpx, streaming), never exposed.

    sovforge serve runs/demo/adapt --backend vllm --report runs/demo/evaluate

The gateway keeps tokenising, guarding, auditing and counting itself: it sends token ids (`prompt: [ids]`) to vLLM's
OpenAI completions route and reads the generated ids back (`return_token_ids`, or `token_id:N` strings from
`--return-tokens-as-token-ids` on older vLLM), so the batching and paged attention are vLLM's and everything the
caller sees still passes through the same code as with the transformers backend.

The subprocess listens on 127.0.0.1 on a free port and requires a random bearer token (passed in `VLLM_API_KEY`, so it
is not visible in `ps`), so other local users cannot bypass the gateway either. It is started when the backend is made,
health-checked with a timeout, and terminated (process group: SIGTERM, then SIGKILL) on close.

Untested on a GPU in this repository's CI: the tests cover the refusals (no vllm, no CUDA), the command line and the
HTTP client against a stand-in server speaking vLLM's response shapes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

from sovforge.serve.backend import BackendError, Job, RowScore, TokenizerPrompts

SERVED_NAME = "sovforge-backend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_command(model_path: Path, port: int, *, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The `vllm serve` command line: loopback only, local weights only, no remote code, ids returned as tokens."""
    exe = shutil.which("vllm", path=str(Path(sys.executable).parent)) or shutil.which("vllm")
    head = [exe, "serve"] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    command = [*head, str(model_path), "--host", "127.0.0.1", "--port", str(port),
               "--served-model-name", SERVED_NAME, "--gpu-memory-utilization", str(gpu_memory_utilization),
               "--return-tokens-as-token-ids", "--disable-uvicorn-access-log", "--generation-config", "vllm"]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    for arg in extra_args:
        if arg.startswith("--host") or arg == "--trust-remote-code":
            raise BackendError(f"vllm argument {arg} is not allowed: the backend stays on loopback, without remote code")
    return command + list(extra_args)


def check_vllm_available() -> None:
    """BackendError naming what is missing when vLLM cannot run here."""
    if importlib.util.find_spec("vllm") is None:
        raise BackendError("--backend vllm: vllm is not installed (pip install vllm on a CUDA machine); "
                           "use --backend transformers")
    import torch

    if not torch.cuda.is_available():
        raise BackendError("--backend vllm needs a CUDA GPU and none is visible; use --backend transformers")


def _token_ids(choice: dict[str, Any]) -> list[int]:
    """Generated ids of one completion choice (chunk): `token_ids` (vLLM >= 0.10.2) or `token_id:N` logprob tokens."""
    if isinstance(choice.get("token_ids"), list):
        return [int(t) for t in choice["token_ids"]]
    tokens = (choice.get("logprobs") or {}).get("tokens") or []
    return [int(str(t).removeprefix("token_id:")) for t in tokens]


class VllmBackend(TokenizerPrompts):
    """The backend interface of `TransformersBackend` (encode/decode/stream/score/close) over a vLLM subprocess."""

    name = "vllm"
    OPTIONS = ("max_model_len", "gpu_memory_utilization", "startup_timeout_s", "extra_args", "base_url", "api_key")

    def __init__(self, model_path: Path, *, max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 startup_timeout_s: float = 900.0, extra_args: tuple[str, ...] = (), base_url: str | None = None,
                 api_key: str | None = None):
        import httpx

        from sovforge.model.loading import load_tokenizer

        if base_url is None:
            check_vllm_available()  # before loading anything
        self.model_path = Path(model_path)
        config = json.loads((self.model_path / "config.json").read_text(encoding="utf-8"))
        self.max_positions = int(max_model_len or config.get("max_position_embeddings") or 2048)
        self.tokenizer = load_tokenizer(self.model_path)  # the gateway tokenises: same counts and guard as always
        self.vocab_size = int(config.get("vocab_size") or len(self.tokenizer))
        self.batches_run, self.inflight, self.process = 0, 0, None
        self.log_path: Path | None = None
        if base_url is None:  # the normal case: start our own vllm on a free loopback port
            port = free_port()
            base_url, api_key = f"http://127.0.0.1:{port}", secrets.token_urlsafe(32)
            self._start(vllm_command(self.model_path, port, max_model_len=max_model_len,
                                     gpu_memory_utilization=gpu_memory_utilization, extra_args=extra_args),
                        api_key, startup_timeout_s, base_url)
        elif not base_url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
            raise BackendError(f"vllm base_url must be on loopback, not {base_url}")
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=httpx.Timeout(None, connect=10))

    # ---------------------------------------------------------------------------------- subprocess
    def _start(self, command: list[str], api_key: str, timeout: float, base_url: str) -> None:
        import httpx

        env = {**os.environ, "VLLM_API_KEY": api_key, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        self.log_path = Path(tempfile.mkstemp(prefix="sovforge-vllm-", suffix=".log")[1])
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(f"vllm exited with code {self.process.returncode} while starting; "
                                   f"last lines of {self.log_path}:\n{self._log_tail()}")
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.close()
        raise BackendError(f"vllm did not become healthy within {timeout:.0f} s; see {self.log_path}:\n"
                           f"{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # vllm forks engine workers: end the whole group
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def queue_depth(self) -> int:
        return self.inflight

    # ---------------------------------------------------------------------------------- generation
    def _request(self, job: Job) -> dict[str, Any]:
        body: dict[str, Any] = {"model": SERVED_NAME, "prompt": job.prompt_ids, "max_tokens": job.max_tokens,
                                "temperature": max(job.temperature, 0.0), "top_p": job.top_p, "stream": True,
                                "logprobs": 1, "return_token_ids": True, "ignore_eos": job.ignore_eos}
        if job.seed is not None:
            body["seed"] = job.seed
        return body

    async def stream(self, job: Job) -> AsyncIterator[int]:
        self._check_room(job)
        self.inflight += 1
        loop = asyncio.get_running_loop()
        deadline = job.deadline if job.deadline is not None else loop.time() + 86400
        try:
            async with self.client.stream("POST", "/v1/completions", json=self._request(job)) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")[:500]
                    raise BackendError(f"vllm answered {response.status_code}: {detail}")
                lines = response.aiter_lines()
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):  # around the wait only, never around a yield
                            line = await anext(lines)
                    except StopAsyncIteration:
                        break
                    if job.cancelled:
                        return  # leaving the block closes the connection; vllm aborts the request
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    for choice in json.loads(line[6:]).get("choices", []):
                        for token in _token_ids(choice):
                            yield token
        finally:
            self.inflight -= 1
            self.batches_run += 1

    async def score(self, rows: list[list[int]], top_n: int) -> list[RowScore]:
        """Prompt log-probabilities from vllm (echo + logprobs, one extra generated token that is dropped)."""
        self.inflight += 1
        try:
            response = await self.client.post("/v1/completions", json={
                "model": SERVED_NAME, "prompt": rows, "max_tokens": 1, "echo": True, "temperature": 0,
                "logprobs": max(top_n, 1)})
        finally:
            self.inflight -= 1
        if response.status_code != 200:
            raise BackendError(f"vllm answered {response.status_code}: {response.text[:500]}")
        scores = []
        for row, choice in zip(rows, sorted(response.json()["choices"], key=lambda c: c["index"]), strict=True):
            logprobs = choice["logprobs"]
            top = [None if entry is None else sorted(((int(str(k).removeprefix("token_id:")), float(v))
                                                      for k, v in entry.items()), key=lambda kv: -kv[1])[:top_n]
                   for entry in logprobs["top_logprobs"][: len(row)]]
            scores.append(RowScore(list(logprobs["token_logprobs"][: len(row)]), top))
        return scores
