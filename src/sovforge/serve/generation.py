"""One request's generation inside `sovforge serve`: backend token ids → guarded text deltas, and OpenAI logprobs.

`Generation.deltas()` turns the backend's token stream into the text the caller may see: incremental detokenisation
(two short decodes per token, not a decode of the whole answer), stop strings, the incremental `AnswerGuard`
(PII redacted, markings above clearance withheld), the request timeout. `legacy_logprobs` builds the OpenAI
completions `logprobs` object (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) from a scored row.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from typing import Any

from sovforge.classification import Level
from sovforge.serve.backend import Job, RowScore
from sovforge.serve.guard import AnswerGuard, screen

WITHHELD = "[answer withheld: it carries a classification marking above your clearance]"


class Detokenizer:
    """Incremental decoding of a transformers tokenizer's ids: `push(id)` returns the characters that id completes.

    Fast tokenizers use the Rust `tokenizers.decoders.DecodeStream` (constant work per token); others decode a short
    window of ids and emit only the new characters (the vLLM/TGI scheme). A byte-level token that ends inside a
    multi-byte character yields nothing until the character is complete, so the pieces concatenate to
    `tokenizer.decode(ids, skip_special_tokens=True)`; `flush()` returns whatever an unfinished tail decodes to.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer, self.ids, self.emitted, self.pending = tokenizer, [], 0, False
        self.rust, self.stream, self.prefix, self.read = getattr(tokenizer, "backend_tokenizer", None), None, 0, 0
        if self.rust is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            try:
                from tokenizers.decoders import DecodeStream

                self.stream = DecodeStream(skip_special_tokens=True)
            except ImportError:  # tokenizers < 0.21
                pass

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        self.ids.append(token)
        if self.stream is not None:
            piece = self.stream.step(self.rust, token)
            self.pending = piece is None
            piece = piece or ""
        else:
            before = self._decode(self.ids[self.prefix:self.read])
            after = self._decode(self.ids[self.prefix:])
            piece, self.pending = "", True
            if len(after) > len(before) and not after.endswith("\ufffd"):
                self.prefix, self.read, self.pending = self.read, len(self.ids), False
                piece = after[len(before):]
        self.emitted += len(piece)
        return piece

    def flush(self) -> str:
        if not self.pending:
            return ""
        self.pending = False
        whole = self._decode(self.ids)  # once, at the end, only when a tail is still undecoded
        rest = whole[self.emitted:] if len(whole) > self.emitted else ""
        self.emitted += len(rest)
        return rest


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds (possibly ""), so that `"".join(pieces)` is the decoded text of `ids`."""
    detok = Detokenizer(tokenizer)
    pieces = [detok.push(token) for token in ids]
    if pieces:
        pieces[-1] += detok.flush()
    return pieces


class Generation:
    """One request's tokens → guarded text deltas (stop strings, PII redaction, clearance block, timeout)."""

    def __init__(self, backend: Any, job: Job, stops: list[str], clearance: Level, timeout: float):
        self.backend, self.job, self.stops, self.clearance = backend, job, stops, clearance
        self.deadline = time.monotonic() + timeout
        self.guard = AnswerGuard(clearance, hold=max((len(s) for s in stops), default=0))
        self.ids: list[int] = []
        self.text, self.finish_reason = "", "stop"
        self.stopped = False  # a stop string ended the answer
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self._tail = ""  # the last len(longest stop) - 1 characters, to find a stop split across pieces

    @property
    def tokens(self) -> int:
        return len(self.ids)

    @property
    def decision(self) -> dict[str, Any]:
        return self.guard.decision()

    @property
    def altered(self) -> bool:
        """True when the guard changed the model's text (redacted or withheld): its tokens must not be echoed."""
        return bool(self.guard.redactions) or self.guard.blocked

    def _cut_at_stop(self, piece: str) -> str:
        """`piece` up to the first stop string (then `stopped`); retracts a stop's start from earlier pieces."""
        if not self.stops or not piece:
            return piece
        window = self._tail + piece
        hits = [at for stop in self.stops if (at := window.find(stop)) >= 0]
        if not hits:
            longest = max(len(s) for s in self.stops)
            self._tail = window[-(longest - 1):] if longest > 1 else ""
            return piece
        self.stopped = True
        at = min(hits) - len(self._tail)
        if at < 0:
            self.guard.retract(-at)  # the stop began in text the guard is still holding back
            return ""
        return piece[:at]

    async def deltas(self):
        loop = asyncio.get_running_loop()
        self.job.deadline = loop.time() + (self.deadline - time.monotonic())  # the backend raises TimeoutError
        detok = Detokenizer(self.backend.tokenizer)
        try:
            async with aclosing(self.backend.stream(self.job)) as tokens:
                async for token in tokens:
                    if loop.time() > self.job.deadline:  # backends also time out on their own while waiting
                        raise TimeoutError("generation timed out")
                    now = time.perf_counter()
                    self.first_token_at = self.first_token_at or now
                    self.last_token_at = now
                    self.ids.append(token)
                    out = self.guard.feed(self._cut_at_stop(detok.push(token)))
                    if self.guard.blocked or self.stopped:
                        break
                    if out:
                        self.text += out
                        yield out
        finally:
            self.job.cancelled = True
        if not self.stopped and not self.guard.blocked:
            self.guard.feed(self._cut_at_stop(detok.flush()))
        rest = self.guard.finish()
        if not self.guard.blocked:
            # defence in depth: the whole answer once more (linear, once); a marking the windows missed still blocks
            _, whole, blocked = screen(self.text + rest, self.clearance, redact=False)
            if blocked:
                self.guard.blocked, self.guard.level = True, Level[whole["level"]]
        if self.guard.blocked:
            self.finish_reason = "content_filter"
            rest = ("\n" if self.text else "") + WITHHELD
            self.text = WITHHELD if not self.text else self.text + rest
        else:
            if not self.stopped and self.tokens >= self.job.max_tokens:
                self.finish_reason = "length"
            self.text += rest
        if rest:
            yield rest

    def kept_ids(self) -> list[int]:
        """Generated ids whose text the caller received unaltered (for logprobs): all of them, up to a stop string,
        or none when the guard rewrote the answer."""
        if self.altered:
            return []
        if not self.stopped:
            return list(self.ids)
        kept, offset = [], 0
        for token, piece in zip(self.ids, token_pieces(self.backend.tokenizer, self.ids)):
            if offset >= len(self.text) and kept:
                break
            kept.append(token)
            offset += len(piece)
        return kept


def legacy_logprobs(tokenizer: Any, segments: list[list[int]], score: RowScore, offset: int,
                    top_n: int) -> dict[str, Any]:
    """OpenAI completions `logprobs` for the tokens of `segments` (e.g. [prompt ids, completion ids] with echo,
    [completion ids] without), which are `score`'s row from position `offset` on. Each segment is decoded on its own,
    as the response text was, so `text_offset` indexes the returned text."""
    cache: dict[int, str] = {}

    def piece_of(token: int) -> str:
        if token not in cache:
            cache[token] = tokenizer.decode([token])
        return cache[token]

    tokens, logprobs, tops, offsets, position = [], [], [], [], 0
    index = offset
    for ids in segments:
        for token, piece in zip(ids, token_pieces(tokenizer, ids)):
            tokens.append(piece)
            offsets.append(position)
            position += len(piece)
            logprob = score.token_logprobs[index]
            logprobs.append(logprob)
            if score.top[index] is None:
                tops.append(None)
            else:
                top: dict[str, float] = {}
                for candidate, value in score.top[index][:top_n]:
                    key = piece_of(candidate)
                    top[key] = max(value, top.get(key, value))
                if logprob is not None:  # the chosen token is always listed (as vLLM does), so top is never empty
                    top[piece] = max(logprob, top.get(piece, logprob))
                tops.append(top)
            index += 1
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}
