"""The gateway app: `sovforge serve MODEL` runs `create_app(ServeConfig(...))` under uvicorn.

OpenAI-compatible /v1/models, /v1/chat/completions (SSE streaming), /v1/completions (also echo + logprobs, token-id
prompts and batches, as lm-eval's `local-completions` sends them), plus /v1/retrieve, admin key routes, /healthz (no
auth), /metrics (Prometheus, operator/admin) and a static chat page at /. Every prompt and answer passes the
`sovforge.screen` guard, and every request to /v1/* and /admin/* — refused ones too (401, 403, 4xx, 429) — leaves
one hash-chained audit record, committed before the caller receives the end of the answer. (/healthz, /metrics and
the static page are not audited; a body refused by its Content-Length never reaches the app.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from sovforge.classification import Level, parse_level
from sovforge.serve.api import (ApiError, ChatRequest, CompletionRequest, KeyRequest, RetrieveRequest, _Sampling,
                                body_doc, describe, error_body, passage_json)
from sovforge.serve.backend import BackendError, Job, make_backend
from sovforge.serve.config import ServeConfig
from sovforge.serve.generation import WITHHELD, Generation, legacy_logprobs, token_pieces  # noqa: F401
from sovforge.serve.guard import QuotaExceeded, Quotas, screen
from sovforge.serve.ops import ObserveMiddleware, make_metrics
from sovforge.serve.store import AuditWriter, Store, now, sha256_text

log = logging.getLogger("sovforge.serve")
KNOWN_ROUTES = frozenset({"/", "/healthz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions",
                          "/v1/retrieve", "/admin/keys"})


class PromotionError(ValueError):
    """The model is not the promoted candidate of the given report (or there is no report)."""


def check_promotion(model_id: str, report: Path | None, force: bool) -> str:
    """'promoted' or 'forced: ...'; raise PromotionError when serving is refused."""
    from sovforge.artifacts import load_artifact

    if report is None:
        if force:
            return "forced: no evaluation report given"
        raise PromotionError("no --report given: serve only a model an evaluation promoted (sovforge evaluate), "
                             "or pass --force-unpromoted to serve it anyway")
    stats = load_artifact(report, kind="report").stats
    if stats.get("candidate") != model_id:
        problem = f"report {report} evaluated {stats.get('candidate')!r}, not this model {model_id!r}"
    elif stats.get("promoted") is not True:
        problem = f"report {report} did not promote {model_id} (failed rules: {stats.get('failed_rules') or 'n/a'})"
    else:
        return "promoted"
    if force:
        return f"forced: {problem}"
    raise PromotionError(problem + "; pass --force-unpromoted to serve it anyway")


@dataclass
class Prompt:
    """One prompt of a request: its text (what the guard screens and the audit hashes) and how to tokenise it."""

    text: str
    ids: list[int] | None = None  # the caller sent token ids
    messages: list[dict[str, str]] | None = None  # a chat: tokenised with the model's chat template


class GuardedStream(StreamingResponse):
    """A streamed answer whose bookkeeping (`on_close`: quota, gauge, audit) runs however the response ends — even
    when the client leaves before the first byte and Starlette never starts the body iterator."""

    def __init__(self, content: Any, *, on_close, **kwargs: Any):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            self.on_close()


def merge_decisions(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    if len(decisions) == 1:
        return decisions[0]
    redactions: dict[str, int] = {}
    for d in decisions:
        for kind, count in d["redactions"].items():
            redactions[kind] = redactions.get(kind, 0) + count
    return {"level": max((Level[d["level"]] for d in decisions), default=Level.UNCLASSIFIED).name,
            "redactions": redactions, "markings": sum(d["markings"] for d in decisions),
            "blocked": any(d["blocked"] for d in decisions), "prompts": len(decisions)}


def create_app(settings: ServeConfig, *, backend: Any = None, store: Store | None = None) -> FastAPI:
    from sovforge.artifacts import open_input

    if settings.model is None:
        raise ValueError("ServeConfig.model is required")
    artifact = open_input(settings.model)
    model_id, model_level = artifact.id, artifact.classification
    promotion = check_promotion(model_id, settings.report, settings.force_unpromoted)
    aliases = {model_id, Path(settings.model).name}
    store = store or Store(settings.db, prefix=settings.table_prefix, state_dir=settings.state_dir,
                           checkpoint_every=settings.checkpoint_every)
    quotas = Quotas(settings.requests_per_minute, settings.tokens_per_day, settings.max_concurrent, settings.redis,
                    prefix=settings.redis_prefix, lease_s=int(2 * settings.request_timeout_s) + 60)
    state: dict[str, Any] = {"backend": backend, "index": None, "writer": None}
    registry, metrics = make_metrics(lambda: state["backend"].queue_depth() if state["backend"] is not None else 0)
    chat_html = (Path(__file__).parent / "static" / "chat.html").read_text(encoding="utf-8")

    def shutdown() -> dict[str, Any] | None:
        # uvicorn has stopped accepting and drained in-flight requests (up to its graceful timeout) before this runs
        if state["backend"] is not None:
            state["backend"].close()
        if state["writer"] is not None:
            state["writer"].close()
        return store.checkpoint()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if state["backend"] is None:
            state["backend"] = await run_in_threadpool(
                make_backend, settings.backend, Path(settings.model), device=settings.device,
                max_batch_size=settings.max_batch_size, batch_wait_ms=settings.batch_wait_ms)
        state["writer"] = AuditWriter(store)
        purged = await run_in_threadpool(store.purge_older_than, settings.retention_days)
        log.info("start", extra={"fields": {"model": model_id, "promotion": promotion, "audit_purged": purged,
                                            "backend": state["backend"].name, "classification": model_level.name}})
        yield
        checkpoint = await run_in_threadpool(shutdown)
        log.info("stop", extra={"fields": {"audit_records": store.count(),
                                           "final_checkpoint": checkpoint and checkpoint["count"]}})

    app = FastAPI(title="sovforge gateway", version="1", lifespan=lifespan)
    app.state.store, app.state.settings, app.state.model_id, app.state.serving = store, settings, model_id, state
    app.state.metrics = metrics
    app.add_middleware(ObserveMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       routes=KNOWN_ROUTES)

    # ------------------------------------------------------------------------------------ errors
    async def audit_refusal(request: Request, status: int, message: str) -> None:
        """A request that ended in an error before any record was written still leaves one, with the reason."""
        if request.url.path.startswith(("/v1/", "/admin/")) and not getattr(request.state, "audited", False):
            who = getattr(request.state, "who", None)
            await audit(request, who, status, guard={"refused": message[:200]},
                        model=model_id if request.url.path.startswith("/v1/") else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = getattr(exc, "kind", "invalid_request_error")
        await audit_refusal(request, exc.status_code, str(exc.detail))
        return JSONResponse(error_body(exc.status_code, str(exc.detail), kind), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        await audit_refusal(request, 422, describe(exc.errors()))
        return JSONResponse(error_body(422, describe(exc.errors()), "invalid_request_error"), 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        try:
            await audit_refusal(request, 500, f"internal error: {type(exc).__name__}")
        except Exception:  # noqa: BLE001 — the database may be what failed; the log line above has the cause
            log.exception("audit write failed")
        return JSONResponse(error_body(500, "internal error (logged)", "server_error"), 500)

    # -------------------------------------------------------------------------------- auth, audit
    def caller(request: Request, *roles: str) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        row = store.authenticate(key.strip()) if scheme.lower() == "bearer" and key else None
        if row is None:
            raise ApiError(401, "missing, invalid or revoked API key (Authorization: Bearer sf-...)",
                           kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})
        request.state.key_id = row["key_id"]  # for the request log line; never the key
        request.state.who = row
        if roles and row["role"] not in roles:
            raise ApiError(403, f"this route needs role {' or '.join(roles)}", kind="permission_error")
        row["level"] = parse_level(row["clearance"])
        return row

    async def body(request: Request, model: type[BaseModel]) -> Any:
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > settings.max_body_bytes:
                raise ApiError(413, f"body larger than {settings.max_body_bytes} bytes")
        try:
            data = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ApiError(400, f"body is not valid UTF-8 JSON ({str(exc)[:200]})") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, describe(exc.errors())) from None

    def audit_record(request: Request, who: dict[str, Any] | None, status: int, *, prompt: str | None = None,
                     answer: str | None = None, **fields: Any) -> dict[str, Any]:
        keep = settings.audit_text
        return {"ts": now(), "who": who and who["name"], "key_id": who and who["key_id"],
                "source_ip": request.client.host if request.client else None, "route": request.url.path,
                "status": status, "prompt_sha256": sha256_text(prompt), "answer_sha256": sha256_text(answer),
                "prompt_text": prompt if keep else None, "answer_text": answer if keep else None,
                **{k: v for k, v in fields.items() if k in ("model", "prompt_tokens", "completion_tokens", "guard")}}

    async def audit(request: Request, who: dict[str, Any] | None, status: int, **fields: Any) -> None:
        request.state.audited = True
        record = audit_record(request, who, status, **fields)
        if state["writer"] is None:  # app used without its lifespan (a bare test harness)
            store.append(**record)
        else:
            await state["writer"].write(record)
        metrics["audit"].inc()

    def visible_model(who: dict[str, Any], requested: str) -> None:
        if requested not in aliases:
            raise ApiError(404, f"model {requested!r} is not served here (GET /v1/models)", kind="not_found_error")
        if model_level > who["level"]:
            raise ApiError(403, "model is classified above your clearance", kind="permission_error")

    # ------------------------------------------------------------------------------------ routes
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok" if state["backend"] is not None else "starting", "model": model_id}

    @app.get("/", response_class=HTMLResponse)
    async def chat_page() -> str:
        return chat_html

    @app.get("/metrics")
    async def metrics_route(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        caller(request, "operator", "admin")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        who = caller(request)
        data = [] if model_level > who["level"] else [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "sovforge",
             "classification": model_level.name, "promotion": promotion}]
        await audit(request, who, 200, guard={"models_visible": len(data)})
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", openapi_extra=body_doc(ChatRequest, sorted(aliases)))
    async def chat(request: Request) -> Any:
        who = caller(request)
        req: ChatRequest = await body(request, ChatRequest)
        visible_model(who, req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        passages: list[Any] = []
        if req.retrieval:
            question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            passages = await run_in_threadpool(retrieve_passages, question, 5, who["level"])
            from sovforge.rag import grounded_messages

            index = state["index"]  # opened by retrieve_passages; its build config holds the relevance thresholds
            messages = grounded_messages(question, passages, history=messages[:-1] or None,
                                         min_score=index.min_score, min_similarity=index.min_similarity)
        prompt = Prompt("\n".join(m["content"] for m in messages), messages=messages)
        return await generate(request, who, req, "chat", [prompt], passages)

    @app.post("/v1/completions", openapi_extra=body_doc(CompletionRequest, sorted(aliases)))
    async def completions(request: Request) -> Any:
        who = caller(request)
        req: CompletionRequest = await body(request, CompletionRequest)
        visible_model(who, req.model)
        backend = state["backend"]
        prompts = []
        for row in req.prompts():
            if isinstance(row, str):
                prompts.append(Prompt(row))
                continue
            if (bad := next((t for t in row if not 0 <= t < backend.vocab_size), None)) is not None:
                raise ApiError(400, f"prompt: token id {bad} is outside the vocabulary (0..{backend.vocab_size - 1})")
            prompts.append(Prompt(backend.decode(row), ids=list(row)))
        return await generate(request, who, req, "text", prompts, [], echo=req.echo, logprobs=req.logprobs)

    async def generate(request: Request, who: dict[str, Any], req: _Sampling, shape: str, prompts: list[Prompt],
                       passages: list[Any], *, echo: bool = False, logprobs: int | None = None) -> Any:
        """Guard the prompts, take the quota, run the generations (batched), guard and audit the answers."""
        started = time.perf_counter()
        stops = req.stops()
        max_tokens = req.max_tokens if req.max_tokens is not None else (req.max_completion_tokens or 256)
        max_tokens = min(max_tokens, settings.max_tokens_limit)
        if max_tokens == 0 and not echo:
            raise ApiError(400, "max_tokens: 0 only makes sense with echo (score the prompt, generate nothing)")
        if req.stream and (echo or logprobs is not None or len(prompts) > 1):
            raise ApiError(400, "stream: not supported together with echo, logprobs or several prompts")
        if (chars := sum(len(p.text) for p in prompts)) > settings.max_prompt_chars:
            raise ApiError(413, f"prompt is {chars} characters; the limit is {settings.max_prompt_chars}")
        joined = "\n".join(p.text for p in prompts)
        base = {"model": model_id, "prompt": joined}
        decisions = []
        for p in prompts:
            screened, decision, blocked = screen(p.text, who["level"], redact=settings.redact_prompts)
            if blocked:
                metrics["guard"].labels("prompt_blocked").inc()
                await audit(request, who, 403, guard={"prompt": decision}, **base)
                raise ApiError(403, f"prompt carries a {decision['level']} marking above your clearance "
                                    f"({who['clearance']})", kind="permission_error")
            if settings.redact_prompts and decision["redactions"]:
                if p.messages is not None:
                    p.messages = [{**m, "content": screen(m["content"], who["level"], redact=True)[0]}
                                  for m in p.messages]
                elif p.ids is None:
                    p.text = screened
            decisions.append(decision)
        prompt_decision = merge_decisions(decisions)
        try:
            quotas.acquire(who["key_id"])
        except QuotaExceeded as exc:
            await audit(request, who, 429, guard={"prompt": prompt_decision}, **base)
            raise ApiError(429, str(exc), kind="rate_limit_error", headers={"Retry-After": str(exc.retry_after)}) from None

        backend = state["backend"]
        rows: list[list[int]] = []
        runs: list[Generation] = []
        released = False

        def finish(status: int) -> dict[str, Any] | None:
            """Release the quota, count, and build the audit record — exactly once per request (then None)."""
            nonlocal released
            if released:
                return None
            released = request.state.audited = True
            prompt_tokens, completion_tokens = sum(map(len, rows)), sum(run.tokens for run in runs)
            quotas.release(who["key_id"], prompt_tokens + completion_tokens)
            metrics["tokens"].labels("prompt").inc(prompt_tokens)
            metrics["tokens"].labels("completion").inc(completion_tokens)
            for run in runs:
                if run.first_token_at is not None:
                    metrics["ttft"].labels(shape).observe(run.first_token_at - started)
                    if run.tokens > 1 and run.last_token_at > run.first_token_at:
                        metrics["decode_rate"].observe((run.tokens - 1) / (run.last_token_at - run.first_token_at))
                if run.decision["redactions"] or run.decision["blocked"]:
                    metrics["guard"].labels("answer_redacted_or_blocked").inc()
            answers = [run.decision for run in runs]
            guard = {"prompt": prompt_decision, "answer": merge_decisions(answers) if answers else None}
            if logprobs is not None or echo:
                guard["scoring"] = {"echo": echo, "logprobs": logprobs}
            return audit_record(request, who, status, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens, guard=guard, answer="\n".join(r.text for r in runs),
                                **base)

        async def commit(status: int) -> None:
            if (record := finish(status)) is None:
                return
            if state["writer"] is None:
                store.append(**record)
            else:
                await state["writer"].write(record)
            metrics["audit"].inc()

        def commit_later(status: int) -> None:
            """The request is ending abnormally (client gone, cancelled): queue its record without waiting."""
            if (record := finish(status)) is not None:
                state["writer"].submit(record) if state["writer"] else store.append(**record)

        def stream_closed() -> None:
            metrics["inflight"].dec()
            commit_later(499)  # a no-op when the stream ended normally and committed already

        metrics["inflight"].inc()
        streaming = False
        try:
            for p in prompts:
                ids = p.ids if p.ids is not None else (
                    backend.chat_prompt(p.messages) if p.messages is not None else backend.encode(p.text))
                limit = backend.max_positions - (1 if max_tokens else 0)
                if not ids:
                    raise ApiError(400, "prompt encodes to no tokens")
                if len(ids) > limit:
                    raise ApiError(400, f"prompt is {len(ids)} tokens; this model takes at most {limit}")
                rows.append(ids)
            if max_tokens:
                runs = [Generation(backend, Job(prompt_ids=list(ids), max_tokens=max_tokens,
                                                temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                                                ignore_eos=req.ignore_eos),
                                   stops, who["level"], settings.request_timeout_s) for ids in rows]
            created = int(time.time())
            rid = f"{'chatcmpl' if shape == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
            if req.stream:
                streaming = True
                return GuardedStream(stream_events(runs[0], shape, rid, created, passages, len(rows[0]), commit),
                                     on_close=stream_closed, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

            async def drain(run: Generation) -> None:
                async for _ in run.deltas():
                    pass

            tasks = [asyncio.ensure_future(drain(run)) for run in runs]  # the prompts of one call share batches
            try:
                try:
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:  # one failed or the caller left: stop the others' rows too
                        task.cancel()
            except TimeoutError:
                raise ApiError(504, "generation timed out", kind="timeout_error") from None
            except BackendError as exc:
                log.error("backend failed", extra={"fields": {"error": str(exc)[:500]}})
                raise ApiError(502, f"the model backend failed: {exc}", kind="server_error") from None
            scores = None
            if logprobs is not None:
                try:
                    scores = await backend.score([ids + (runs[i].kept_ids() if runs else [])
                                                  for i, ids in enumerate(rows)], logprobs)
                except BackendError as exc:
                    raise ApiError(501, f"logprobs: {exc}", kind="not_implemented") from None
            usage = {"prompt_tokens": sum(map(len, rows)), "completion_tokens": sum(r.tokens for r in runs)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if shape == "chat":
                citations = cite(runs[0], passages)
                choice = {"index": 0, "message": {"role": "assistant", "content": runs[0].text},
                          "finish_reason": runs[0].finish_reason, "logprobs": None}
                out = {"id": rid, "object": "chat.completion", "created": created, "model": model_id,
                       "choices": [choice], "usage": usage}
                if citations is not None:
                    out["citations"], out["sources"] = citations, sources(passages)
            else:
                choices = []
                for i, ids in enumerate(rows):
                    run = runs[i] if runs else None
                    text = run.text if run else ""
                    if echo:
                        text = "".join(token_pieces(backend.tokenizer, ids)) + text
                    lp = None
                    if scores is not None:
                        segments = ([ids] if echo else []) + [run.kept_ids() if run else []]
                        lp = legacy_logprobs(backend.tokenizer, segments, scores[i], 0 if echo else len(ids), logprobs)
                    choices.append({"index": i, "text": text, "logprobs": lp,
                                    "finish_reason": run.finish_reason if run else "length"})
                out = {"id": rid, "object": "text_completion", "created": created, "model": model_id,
                       "choices": choices, "usage": usage}
            await commit(200)
            return out
        except BaseException as exc:
            commit_later(exc.status_code if isinstance(exc, HTTPException)
                         else 499 if isinstance(exc, asyncio.CancelledError) else 500)
            raise
        finally:
            if not streaming:
                metrics["inflight"].dec()

    async def stream_events(run: Generation, shape: str, rid: str, created: int, passages: list[Any],
                            prompt_tokens: int, commit):
        def chunk(delta: str | None, finish_reason: str | None, extra: dict[str, Any] | None = None,
                  role: bool = False) -> str:
            if shape == "chat":
                payload = {"role": "assistant", "content": delta} if delta is not None or role else {}
                choice = {"index": 0, "delta": payload, "finish_reason": finish_reason, "logprobs": None}
                obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_id,
                       "choices": [choice]}
            else:
                obj = {"id": rid, "object": "text_completion", "created": created, "model": model_id,
                       "choices": [{"index": 0, "text": delta or "", "finish_reason": finish_reason,
                                    "logprobs": None}]}
            obj.update(extra or {})
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        try:
            if shape == "chat":  # the stream has begun (OpenAI sends the role first, with empty content)
                yield chunk("", None, role=True)
            async for delta in run.deltas():
                if delta:
                    yield chunk(delta, None)
            extra: dict[str, Any] = {}
            if (citations := cite(run, passages)) is not None:
                extra["citations"], extra["sources"] = citations, sources(passages)
            extra["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": run.tokens,
                              "total_tokens": prompt_tokens + run.tokens}
            final = chunk(None, run.finish_reason, extra)
            await commit(200)  # the record is in the database before the caller sees the end of the answer
            yield final + "data: [DONE]\n\n"  # one write for both
        except TimeoutError:
            await commit(504)
            yield f"data: {json.dumps(error_body(504, 'generation timed out', 'timeout_error'))}\n\n"
        except BackendError as exc:
            log.error("backend failed", extra={"fields": {"error": str(exc)[:500]}})
            await commit(502)
            yield f"data: {json.dumps(error_body(502, f'the model backend failed: {exc}', 'server_error'))}\n\n"
        finally:
            run.job.cancelled = True

    def retrieve_passages(query: str, k: int, clearance: Level) -> list[Any]:
        try:
            from sovforge.rag import QueryError, open_index
        except ImportError:
            raise ApiError(501, "retrieval is not available in this build (sovforge.rag missing)",
                           kind="not_implemented") from None
        if settings.index is None:
            raise ApiError(501, "retrieval is off: start the server with --index INDEX_DIR", kind="not_implemented")
        if state["index"] is None:
            state["index"] = open_index(settings.index)
        try:
            return state["index"].search(query, k=k, clearance=clearance)
        except QueryError as exc:
            raise ApiError(400, str(exc)) from None

    def cite(run: Generation, passages: list[Any]) -> list[dict[str, Any]] | None:
        if not passages:
            return None
        from sovforge.rag import check_citations

        run.text, citations = check_citations(run.text, passages)
        return citations

    def sources(passages: list[Any]) -> list[dict[str, Any]]:
        """Every passage the answer was grounded on, numbered as the model saw them: the caller can check an
        answer even when the model cited nothing (small models often do not). Empty when none was relevant
        enough to be given (grounded_messages then asks the model to refuse)."""
        from sovforge.rag.grounding import relevant

        index = state["index"]
        if not relevant(passages, index.min_score, index.min_similarity):
            return []
        return [{"n": n, "doc_id": p.doc_id, "source": p.source, "chunk_id": p.chunk_id, "title": p.title,
                 "heading": p.heading, "classification": p.classification} for n, p in enumerate(passages, 1)]

    @app.post("/v1/retrieve", openapi_extra=body_doc(RetrieveRequest))
    async def retrieve(request: Request) -> dict[str, Any]:
        who = caller(request)
        req: RetrieveRequest = await body(request, RetrieveRequest)
        passages = await run_in_threadpool(retrieve_passages, req.query, req.k, who["level"])
        await audit(request, who, 200, prompt=req.query, guard={"passages": len(passages),
                                                                "clearance": who["clearance"]})
        return {"object": "list", "results": [passage_json(p) for p in passages]}  # DESIGN.md §3

    # ------------------------------------------------------------------------------------- admin
    @app.get("/admin/keys")
    async def admin_list(request: Request) -> dict[str, Any]:
        who = caller(request, "admin")
        keys = store.list_keys()
        await audit(request, who, 200, guard={"listed_keys": len(keys)})
        return {"data": keys}

    @app.post("/admin/keys", openapi_extra=body_doc(KeyRequest))
    async def admin_create(request: Request) -> dict[str, Any]:
        who = caller(request, "admin")
        req: KeyRequest = await body(request, KeyRequest)
        try:
            key_id, key = store.create_key(req.name, req.role, req.clearance)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        await audit(request, who, 200, guard={"created_key": key_id, "role": req.role, "clearance": req.clearance})
        return {"key_id": key_id, "key": key, "note": "shown once; store it safely"}

    @app.delete("/admin/keys/{key_id}")
    async def admin_revoke(request: Request, key_id: str) -> dict[str, Any]:
        who = caller(request, "admin")
        if not store.revoke_key(key_id):
            raise ApiError(404, f"no key {key_id!r}", kind="not_found_error")
        await audit(request, who, 200, guard={"revoked_key": key_id})
        return {"key_id": key_id, "revoked": True}

    return app
