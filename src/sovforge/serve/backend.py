"""Generation backends for `sovforge serve`: transformers with request batching (default) and vLLM (CUDA only).

The batcher: requests land on a queue; one worker thread takes the first, waits `batch_wait_ms` for more with the same
sampling settings, left-pads them into one `generate` call, and streams each row's new tokens to that request's own
queue through a batch-aware streamer (transformers' TextIteratorStreamer handles batch size 1 only).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

_END = object()


class BackendError(RuntimeError):
    """The backend cannot start or run; message fit for the operator."""


@dataclass
class Job:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    out: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    cancelled: bool = False

    def batch_key(self) -> tuple:
        # generate() takes one set of sampling settings per call, and a seed only means something for a lone row
        greedy = self.temperature <= 0
        return (greedy, None if greedy else self.temperature, self.top_p, self.seed)


class _RowStreamer:
    """transformers BaseStreamer duck type: the first put() is the prompt batch, then one (batch,) tensor per step."""

    def __init__(self, jobs: list[Job], eos_ids: set[int]):
        self.jobs, self.eos_ids, self.started = jobs, eos_ids, False
        self.done = [False] * len(jobs)
        self.counts = [0] * len(jobs)

    def put(self, value: Any) -> None:
        if not self.started:
            self.started = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            job = self.jobs[row]
            if self.done[row]:
                continue
            if token in self.eos_ids or job.cancelled:
                self.done[row] = True
                job.out.put(_END)
                continue
            job.out.put(token)
            self.counts[row] += 1
            if self.counts[row] >= job.max_tokens:
                self.done[row] = True
                job.out.put(_END)

    def end(self) -> None:
        for row, job in enumerate(self.jobs):
            if not self.done[row]:
                self.done[row] = True
                job.out.put(_END)


class TransformersBackend:
    """A local model served with batched `generate` calls on one worker thread."""

    name = "transformers"

    def __init__(self, model_path: Path, *, device: str | None = None, max_batch_size: int = 8,
                 batch_wait_ms: float = 5.0):
        import torch

        from sovforge.model.loading import default_device, load_model, load_tokenizer

        self.torch = torch
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(model_path)
        self.model = load_model(model_path, device=self.device).eval()
        self.eos_ids = {self.tokenizer.eos_token_id}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            self.eos_ids.add(im_end)  # chat turns end at <|im_end|>
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.max_batch_size, self.batch_wait = max_batch_size, batch_wait_ms / 1000
        self.max_positions = getattr(self.model.config, "max_position_embeddings", 2048)
        self.queue: "queue.Queue[Job | None]" = queue.Queue()
        self.batches_run = 0
        self.worker = threading.Thread(target=self._loop, name="sovforge-batcher", daemon=True)
        self.worker.start()

    # --------------------------------------------------------------------------------------- prompts
    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------------------------ generation
    def submit(self, job: Job) -> Iterator[int]:
        """Queue `job`; iterate its new token ids (blocking) until it ends. Raises what the worker raised."""
        room = self.max_positions - len(job.prompt_ids)
        if room <= 0:
            raise ValueError(f"prompt is {len(job.prompt_ids)} tokens; this model takes at most {self.max_positions}")
        job.max_tokens = max(1, min(job.max_tokens, room))
        self.queue.put(job)
        while True:
            item = job.out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _collect(self, first: Job) -> tuple[list[Job], list[Job]]:
        batch, others = [first], []
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.max_batch_size:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                others.append(job)
                break
            (batch if job.batch_key() == first.batch_key() and first.seed is None else others).append(job)
        return batch, others

    def _loop(self) -> None:
        pending: list[Job | None] = []
        while True:
            job = pending.pop(0) if pending else self.queue.get()
            if job is None:
                return
            batch, others = self._collect(job)
            pending.extend(others)
            try:
                self._generate(batch)
            except Exception as exc:  # hand the failure to every waiting request instead of killing the worker
                for item in batch:
                    item.out.put(exc)

    def _generate(self, batch: list[Job]) -> None:
        torch = self.torch
        width = max(len(job.prompt_ids) for job in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, job in enumerate(batch):  # left padding: every row's last prompt token sits in the same column
            ids[row, width - len(job.prompt_ids):] = torch.tensor(job.prompt_ids)
            mask[row, width - len(job.prompt_ids):] = 1
        first = batch[0]
        sampling: dict[str, Any] = {"do_sample": False}
        if first.temperature > 0:
            sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p, "top_k": 0}
        if first.seed is not None:
            torch.manual_seed(first.seed)
        streamer = _RowStreamer(batch, self.eos_ids)
        with torch.inference_mode():
            self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                max_new_tokens=max(job.max_tokens for job in batch), pad_token_id=self.pad_id,
                                eos_token_id=sorted(self.eos_ids), streamer=streamer, **sampling)
        streamer.end()
        self.batches_run += 1

    def close(self) -> None:
        self.queue.put(None)
        self.worker.join(timeout=30)


class EchoTestBackend(TransformersBackend):
    """TEST-ONLY backend: answers with the prompt's last user message (to plant PII/markings in answers).

    It still uses the real tokenizer, so token counting and streaming go through the same code as the real backend.
    """

    name = "echo-test"

    def __init__(self, model_path: Path, **_: Any):
        from sovforge.model.loading import load_tokenizer

        self.tokenizer = load_tokenizer(model_path)
        self.max_positions = 1 << 20
        self.last_user = ""
        self.batches_run = 0

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        self.last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return self.encode(self.last_user)

    def submit(self, job: Job) -> Iterator[int]:
        yield from job.prompt_ids[1:][: job.max_tokens]  # skip the BOS the tokenizer prepends

    def close(self) -> None:
        pass


def make_backend(kind: str, model_path: Path, **kwargs: Any) -> Any:
    if kind == "transformers":
        return TransformersBackend(model_path, **kwargs)
    if kind == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise BackendError("--backend vllm: vllm is not installed; use --backend transformers") from None
        import torch

        if not torch.cuda.is_available():
            raise BackendError("--backend vllm needs a CUDA GPU and none is visible; use --backend transformers")
        raise BackendError("--backend vllm is not wired in this build yet; use --backend transformers")
    raise BackendError(f"unknown backend {kind!r} (transformers or vllm)")
