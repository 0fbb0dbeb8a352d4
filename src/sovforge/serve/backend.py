"""Generation backends for `sovforge serve MODEL [--backend transformers|transformers-process|vllm]`: transformers
with request batching (default, CPU or GPU), the same in a child process (`sovforge.serve.worker`) and vLLM (CUDA
only, see `sovforge.serve.vllm`).

The batcher: requests land on a queue; one worker thread takes the first, collects more with the same sampling
settings until no request has arrived for `batch_wait_ms` (see `_collect`), left-pads them into one `generate` call,
and hands each row's new tokens to that request through a batch-aware streamer (transformers' TextIteratorStreamer
handles batch size 1 only). Tokens reach an asyncio request with one `loop.call_soon_threadsafe` per decoding step
for the whole batch — no thread-pool hop per token, which is what made the gateway slow (every hop is a GIL hand-off
between the worker, a pool thread and the event loop).
Scoring jobs (echo/logprobs for lm-eval) run on the same worker, so the model is only ever used by one thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

_END = object()
# Tokens for event-loop consumers are handed over at most this often (plus at once for a row's first token and its
# end): each hand-over is a GIL switch between the worker and the loop, and the answer guard holds text back anyway.
_HANDOVER_S = 0.010
# The batcher waits at most this many `batch_wait` gaps for a batch to fill (see `_collect`).
_MAX_WAIT_GAPS = 3
# Scoring a batch materialises (rows, positions, vocab) float32 log-probabilities; keep one forward under ~1 GiB.
_SCORE_ELEMENTS = 1 << 28


class BackendError(RuntimeError):
    """The backend cannot start or run; message fit for the operator."""


@dataclass
class RowScore:
    """Log-probabilities of one scored token row (OpenAI legacy `logprobs` semantics)."""

    token_logprobs: list[float | None]
    """log p(token i | tokens < i); None for the first token, which has no context."""
    top: list[list[tuple[int, float]] | None]
    """Per position the `top_n` most likely token ids with their log-probabilities (None for the first token)."""


@dataclass(kw_only=True)
class _Work:
    """A unit on the worker queue; results go to a blocking queue or, for asyncio callers, to their event loop."""

    out: "queue.Queue[Any]" = field(default_factory=queue.Queue, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    inbox: "asyncio.Queue[Any] | None" = field(default=None, repr=False)
    cancelled: bool = False

    def attach(self) -> None:
        """Deliver results to the running event loop instead of the blocking queue (idempotent)."""
        if self.loop is None:
            self.loop, self.inbox = asyncio.get_running_loop(), asyncio.Queue()


@dataclass
class Job(_Work):
    prompt_ids: list[int] = field(default_factory=list)
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks), as vLLM's ignore_eos
    deadline: float | None = None  # event-loop time after which the consumer gets TimeoutError

    def batch_key(self) -> tuple:
        # generate() takes one set of sampling settings per call, and a seed only means something for a lone row
        greedy = self.temperature <= 0
        return ("gen", greedy, None if greedy else self.temperature, self.top_p, self.seed, self.ignore_eos)


@dataclass
class ScoreJob(_Work):
    rows: list[list[int]] = field(default_factory=list)
    top_n: int = 0

    def batch_key(self) -> tuple:
        return ("score", None)


def _deliver(items: list[tuple[_Work, Any]]) -> None:
    """Hand (work, item) pairs to their consumers: one wake-up per event loop, not one per item."""
    by_loop: dict[Any, list[tuple[_Work, Any]]] = defaultdict(list)
    for work, item in items:
        if work.loop is None:
            work.out.put(item)
        else:
            by_loop[work.loop].append((work, item))
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_fan_out, pairs)
        except RuntimeError:  # that request's loop is closed (client gone at shutdown): nobody is listening
            pass


def _fan_out(pairs: list[tuple[_Work, Any]]) -> None:
    for work, item in pairs:
        work.inbox.put_nowait(item)


class _RowStreamer:
    """transformers BaseStreamer duck type: the first put() is the prompt batch, then one (batch,) tensor per step.

    End-of-sequence ids are passed on (then the end marker): OpenAI/vLLM count and score the EOS token, and lm-eval's
    loglikelihood drops the last token of an echo+max_tokens=1 reply assuming it is the generated one.
    """

    def __init__(self, jobs: list[Job], eos_ids: set[int]):
        self.jobs, self.eos_ids, self.started = jobs, eos_ids, False
        self.done = [False] * len(jobs)
        self.counts = [0] * len(jobs)
        self.held: list[tuple[_Work, Any]] = []  # loop-bound items waiting for the next hand-over
        self.handed_at = 0.0

    def put(self, value: Any) -> None:
        if not self.started:
            self.started = True
            return
        urgent = False
        for row, token in enumerate(value.reshape(-1).tolist()):
            job = self.jobs[row]
            if self.done[row]:
                continue
            if job.cancelled:
                self.done[row] = True
                self.held.append((job, _END))
                continue
            self.held.append((job, token))
            self.counts[row] += 1
            urgent = urgent or self.counts[row] == 1 or job.loop is None
            if (token in self.eos_ids and not job.ignore_eos) or self.counts[row] >= job.max_tokens:
                self.done[row] = True
                self.held.append((job, _END))
                urgent = True
        now = time.monotonic()
        if urgent or now - self.handed_at >= _HANDOVER_S:
            _deliver(self.held)
            self.held, self.handed_at = [], now

    def end(self) -> None:
        self.held += [(job, _END) for row, job in enumerate(self.jobs) if not self.done[row]]
        _deliver(self.held)
        self.held, self.done = [], [True] * len(self.jobs)


class TokenizerPrompts:
    """Chat template, encode and decode through `self.tokenizer`: shared by the in-process and the vLLM backend,
    so both count and render prompt tokens identically (quotas and max_tokens checks agree)."""

    tokenizer: Any
    max_positions: int

    def _check_room(self, job: Job) -> None:
        """ValueError when the prompt leaves no room; otherwise cut max_tokens to what fits."""
        room = self.max_positions - len(job.prompt_ids)
        if room <= 0:
            raise ValueError(f"prompt is {len(job.prompt_ids)} tokens; this model takes at most {self.max_positions}")
        job.max_tokens = max(1, min(job.max_tokens, room))

    def _check_rows(self, rows: list[list[int]]) -> None:
        for row in rows:
            if len(row) > self.max_positions:
                raise ValueError(f"row is {len(row)} tokens; this model takes at most {self.max_positions}")

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class BatcherClient(TokenizerPrompts):
    """submit/stream/score over a batcher's work queue, wherever the batcher runs: in this process
    (`TransformersBackend`) or in a child process (`sovforge.serve.worker.ProcessBackend`). Only `_enqueue` (hand a
    unit of work over) and `_abandon` (the consumer stopped listening) differ."""

    def _enqueue(self, work: _Work) -> None:
        raise NotImplementedError

    def _abandon(self, work: _Work) -> None:
        work.cancelled = True  # the batcher drops the row at its next step

    def submit(self, job: Job) -> Iterator[int]:
        """Queue `job`; iterate its new token ids (blocking) until it ends. Raises what the worker raised."""
        self._check_room(job)
        self._enqueue(job)
        try:
            while (item := job.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._abandon(job)

    async def stream(self, job: Job) -> AsyncIterator[int]:
        """Queue `job`; yield its new token ids inside the caller's event loop; cancels the row when abandoned."""
        self._check_room(job)
        job.attach()
        # one timer for the whole request instead of a timeout scope around every token's wait
        timer = None if job.deadline is None else job.loop.call_at(
            job.deadline, job.inbox.put_nowait, TimeoutError("generation timed out"))
        self._enqueue(job)
        try:
            while (item := await job.inbox.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._abandon(job)  # abandoned (client gone, timeout) or finished: nothing more is wanted
            if timer is not None:
                timer.cancel()

    async def score(self, rows: list[list[int]], top_n: int) -> list[RowScore]:
        """Teacher-forced log-probabilities of every token of every row (one forward pass, batched)."""
        self._check_rows(rows)
        work = ScoreJob(rows=rows, top_n=top_n)
        work.attach()
        self._enqueue(work)
        item = await work.inbox.get()
        if isinstance(item, BaseException):
            raise item
        return item


class TransformersBackend(BatcherClient):
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
        self._set_special_ids()
        self.max_batch_size, self.batch_wait = max_batch_size, batch_wait_ms / 1000
        self.max_positions = getattr(self.model.config, "max_position_embeddings", 2048)
        self.vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.queue: "queue.Queue[_Work | None]" = queue.Queue()
        self._pending: list[_Work | None] = []
        self.batches_run = 0
        self.worker = threading.Thread(target=self._loop, name="sovforge-batcher", daemon=True)
        self.worker.start()

    def _set_special_ids(self) -> None:
        self.eos_ids = {self.tokenizer.eos_token_id} - {None}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            self.eos_ids.add(im_end)  # chat turns end at <|im_end|>
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

    def queue_depth(self) -> int:
        """Work items waiting for the worker (not counting the batch it is running)."""
        return self.queue.qsize() + len(self._pending)

    # ------------------------------------------------------------------------------------ generation
    def _enqueue(self, work: _Work) -> None:
        self.queue.put(work)

    def _collect(self, first: _Work) -> tuple[list[_Work], list[_Work | None]]:
        """The batch that starts with `first`: more work with the same settings until the queue has been quiet for
        `batch_wait`, the batch is full, or `_MAX_WAIT_GAPS` gaps have passed since `first`.

        The quiet gap restarts at every arrival. Requests that come through the gateway do not arrive together, even
        when their clients send them at once: the event loop finishes the last batch's streams and then parses,
        authenticates and screens the next requests one after another. A fixed window from the first arrival split
        those requests over two `generate` calls (6.40 rows per batch instead of 8 with 8 clients in
        bench/serve_load.py). A lone request still waits only one gap.
        """
        batch, others = [first], []
        started = time.monotonic()
        deadline = started + self.batch_wait
        cap = started + _MAX_WAIT_GAPS * self.batch_wait
        lone = getattr(first, "seed", None) is not None
        while len(batch) < self.max_batch_size and not lone:
            try:
                work = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            deadline = min(cap, time.monotonic() + self.batch_wait)
            if work is None:
                others.append(work)
                break
            same = work.batch_key() == first.batch_key() and getattr(work, "seed", None) is None
            (batch if same else others).append(work)
        return batch, others

    def _loop(self) -> None:
        while True:
            work = self._pending.pop(0) if self._pending else self.queue.get()
            if work is None:
                return
            if work.cancelled:
                _deliver([(work, _END)])
                continue
            batch, others = self._collect(work)
            self._pending.extend(others)
            try:
                if isinstance(work, ScoreJob):
                    self._score(batch)
                else:
                    self._generate(batch)
            except Exception as exc:  # hand the failure to every waiting request instead of killing the worker
                _deliver([(item, exc) for item in batch])

    def _generate(self, batch: list[Job]) -> None:
        torch = self.torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        self.batches_run += 1  # counted before any row is answered, so a caller that has its answer sees the count
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
        if first.ignore_eos:  # the whole batch shares the flag (batch_key): EOS is masked until max_new_tokens
            sampling["min_new_tokens"] = max(job.max_tokens for job in batch)
        streamer = _RowStreamer(batch, self.eos_ids)

        class RowsDone(StoppingCriteria):
            """Stop the whole call once every row has ended or its client has gone (no wasted steps)."""

            def __call__(self, input_ids, scores, **kwargs):  # -> (batch,) bool
                return torch.tensor(streamer.done, dtype=torch.bool, device=input_ids.device)

        with torch.inference_mode():
            self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                max_new_tokens=max(job.max_tokens for job in batch), pad_token_id=self.pad_id,
                                eos_token_id=sorted(self.eos_ids), streamer=streamer,
                                stopping_criteria=StoppingCriteriaList([RowsDone()]), **sampling)
        streamer.end()

    def _score(self, batch: list[ScoreJob]) -> None:
        torch = self.torch
        flat = [(work, index, row) for work in batch for index, row in enumerate(work.rows)]
        results: dict[int, list[RowScore | None]] = {id(work): [None] * len(work.rows) for work in batch}
        chunk: list[tuple[ScoreJob, int, list[int]]] = []

        def run(chunk: list[tuple[ScoreJob, int, list[int]]]) -> None:
            width = max(len(row) for _, _, row in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (_, _, row) in enumerate(chunk):  # right padding: a causal model never looks at the pads
                ids[r, :len(row)] = torch.tensor(row)
                mask[r, :len(row)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
            for r, (work, index, row) in enumerate(chunk):
                n = len(row)
                steps = logp[r, : n - 1]  # (n-1, V): position i predicts token i+1
                target = torch.tensor(row[1:], device=steps.device)
                chosen = steps.gather(1, target[:, None])[:, 0].tolist() if n > 1 else []
                tops: list[list[tuple[int, float]] | None] = [None]
                if work.top_n > 0 and n > 1:
                    values, indices = steps.topk(min(work.top_n, steps.shape[-1]), dim=-1)  # (n-1, k)
                    tops += [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
                else:
                    tops += [[] for _ in range(n - 1)]
                results[id(work)][index] = RowScore([None, *chosen], tops)

        for item in sorted(flat, key=lambda t: len(t[2])):
            if chunk and (len(chunk) + 1) * max(len(item[2]), 1) * self.vocab_size > _SCORE_ELEMENTS:
                run(chunk)
                chunk = []
            chunk.append(item)
        if chunk:
            run(chunk)
        _deliver([(work, results[id(work)]) for work in batch])

    def close(self) -> None:
        if self.worker.is_alive():
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
        self._set_special_ids()
        self.max_positions = 1 << 20
        self.vocab_size = len(self.tokenizer)
        self.last_user, self.last_messages = "", []
        self.batches_run = 0

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        self.last_messages = messages  # what a model would have been shown (tests check what reached it)
        self.last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return self.encode(self.last_user)

    def _echo(self, job: Job) -> list[int]:
        bos = self.tokenizer.bos_token_id
        ids = job.prompt_ids[1:] if job.prompt_ids[:1] == [bos] else job.prompt_ids
        return ids[: job.max_tokens]

    def submit(self, job: Job) -> Iterator[int]:
        yield from self._echo(job)

    async def stream(self, job: Job) -> AsyncIterator[int]:
        for token in self._echo(job):
            yield token

    async def score(self, rows: list[list[int]], top_n: int) -> list[RowScore]:
        raise BackendError("the echo test backend has no model to score with")

    def queue_depth(self) -> int:
        return 0

    def close(self) -> None:
        pass


def make_backend(kind: str, model_path: Path, **kwargs: Any) -> Any:
    """The backend named `kind` for the model at `model_path`; BackendError with a clear reason when it cannot run."""
    if kind == "transformers":
        return TransformersBackend(model_path, **kwargs)
    if kind == "transformers-process":
        from sovforge.serve.worker import ProcessBackend

        return ProcessBackend(model_path, **kwargs)
    if kind == "vllm":
        from sovforge.serve.vllm import VllmBackend

        return VllmBackend(model_path, **{k: v for k, v in kwargs.items() if k in VllmBackend.OPTIONS})
    raise BackendError(f"unknown backend {kind!r} (transformers, transformers-process or vllm)")
