"""The gateway app: `sovforge serve MODEL` runs `create_app(ServeConfig(...))` under uvicorn.

OpenAI-compatible /v1/models, /v1/chat/completions (SSE streaming), /v1/completions, plus /v1/retrieve, admin key
routes, /healthz (no auth), /metrics (Prometheus, operator/admin) and a static chat page at /. Every prompt and answer
passes the `sovforge.screen` guard, and every authenticated request leaves one hash-chained audit record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from sovforge.classification import Level, parse_level
from sovforge.serve.backend import Job, make_backend
from sovforge.serve.config import ServeConfig
from sovforge.serve.guard import QuotaExceeded, Quotas, screen
from sovforge.serve.store import Store, sha256_text

log = logging.getLogger("sovforge.serve")
HOLD_BACK = 48  # chars withheld while streaming so a PII value split across tokens is redacted before it is sent
WITHHELD = "[answer withheld: it carries a classification marking above your clearance]"
_DONE = object()


class PromotionError(ValueError):
    """The model is not the promoted candidate of the given report (or there is no report)."""


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.kind = kind


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, logprobs...)


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class _Sampling(_Lenient):
    model: str = Field(min_length=1, max_length=400)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ApiError(400, "stop: at most 4 non-empty strings")
        return stops


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    retrieval: bool = False


class CompletionRequest(_Sampling):
    prompt: str


class RetrieveRequest(_Lenient):
    query: str
    k: int = Field(default=5, ge=1, le=50)


class KeyRequest(_Lenient):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["user", "operator", "admin"] = "user"
    clearance: str = "UNCLASSIFIED"


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


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    return registry, {
        "requests": Counter("sovforge_requests", "Requests by route and status", ["route", "status"], registry=registry),
        "latency": Histogram("sovforge_request_seconds", "Request latency", ["route"], registry=registry),
        "tokens": Counter("sovforge_tokens", "Tokens processed", ["kind"], registry=registry),
        "inflight": Gauge("sovforge_inflight", "Requests being generated", registry=registry),
        "guard": Counter("sovforge_guard_decisions", "Guard decisions", ["decision"], registry=registry),
    }


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
    quotas = Quotas(settings.requests_per_minute, settings.tokens_per_day, settings.max_concurrent, settings.redis)
    registry, metrics = _metrics()
    state: dict[str, Any] = {"backend": backend, "index": None}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if state["backend"] is None:
            state["backend"] = await run_in_threadpool(
                make_backend, settings.backend, Path(settings.model), device=settings.device,
                max_batch_size=settings.max_batch_size, batch_wait_ms=settings.batch_wait_ms)
        log.info(json.dumps({"event": "start", "model": model_id, "promotion": promotion,
                             "backend": state["backend"].name}))
        yield
        # graceful shutdown: uvicorn has drained connections; stop the batcher, then seal the audit log
        await run_in_threadpool(state["backend"].close)
        store.checkpoint()
        log.info(json.dumps({"event": "stop", "audit_records": store.count()}))

    app = FastAPI(title="sovforge gateway", version="1", lifespan=lifespan)
    app.state.store, app.state.settings, app.state.model_id, app.state.serving = store, settings, model_id, state

    # ------------------------------------------------------------------------------------ errors
    def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind, "code": status}}

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        kind = getattr(exc, "kind", "invalid_request_error")
        return JSONResponse(error_body(exc.status_code, str(exc.detail), kind), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, _describe(exc.errors()), "invalid_request_error"), 422)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(500, "internal error (logged)", "server_error"), 500)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = JSONResponse(error_body(413, f"body larger than {settings.max_body_bytes} bytes",
                                                         "invalid_request_error"), 413)
        else:
            response = await call_next(request)
        route = request.url.path if request.url.path.startswith(("/v1/", "/admin/")) else "other"
        metrics["requests"].labels(route, str(response.status_code)).inc()
        metrics["latency"].labels(route).observe(time.perf_counter() - started)
        log.info(json.dumps({"event": "request", "route": request.url.path, "status": response.status_code,
                             "ms": round(1000 * (time.perf_counter() - started), 1)}))
        return response

    # -------------------------------------------------------------------------------------- auth
    def caller(request: Request, *roles: str) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        row = store.authenticate(key.strip()) if scheme.lower() == "bearer" and key else None
        if row is None:
            raise ApiError(401, "missing, invalid or revoked API key (Authorization: Bearer sf-...)",
                           kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})
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
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"body is not valid UTF-8 JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, _describe(exc.errors())) from None

    def audit(request: Request, who: dict[str, Any] | None, status: int, **fields: Any) -> None:
        text = settings.audit_text
        store.append(who=who and who["name"], key_id=who and who["key_id"],
                     source_ip=request.client.host if request.client else None, route=request.url.path,
                     status=status, prompt_sha256=sha256_text(fields.pop("prompt", None)),
                     answer_sha256=sha256_text(fields.get("answer")),
                     prompt_text=fields.pop("prompt_text", None) if text else None,
                     answer_text=fields.pop("answer", None) if text else None,
                     **{k: v for k, v in fields.items() if k in ("model", "prompt_tokens", "completion_tokens", "guard")})

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
        return (Path(__file__).parent / "static" / "chat.html").read_text(encoding="utf-8")

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
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", openapi_extra=_body_doc(ChatRequest))
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

            messages = grounded_messages(question, passages, history=messages[:-1] or None)
        prompt = "\n".join(m["content"] for m in messages)
        return await complete(request, who, req, prompt, lambda: state["backend"].chat_prompt(messages), "chat",
                              passages)

    @app.post("/v1/completions", openapi_extra=_body_doc(CompletionRequest))
    async def completions(request: Request) -> Any:
        who = caller(request)
        req: CompletionRequest = await body(request, CompletionRequest)
        visible_model(who, req.model)
        return await complete(request, who, req, req.prompt, lambda: state["backend"].encode(req.prompt), "text", [])

    async def complete(request: Request, who: dict[str, Any], req: _Sampling, prompt: str, encode, shape: str,
                       passages: list[Any]) -> Any:
        stops = req.stops()
        if len(prompt) > settings.max_prompt_chars:
            raise ApiError(413, f"prompt is {len(prompt)} characters; the limit is {settings.max_prompt_chars}")
        screened, prompt_decision, blocked = screen(prompt, who["level"], redact=settings.redact_prompts)
        base = {"model": model_id, "prompt": prompt, "prompt_text": prompt}
        if blocked:
            metrics["guard"].labels("prompt_blocked").inc()
            audit(request, who, 403, guard={"prompt": prompt_decision}, **base)
            raise ApiError(403, f"prompt carries a {prompt_decision['level']} marking above your clearance "
                                f"({who['clearance']})", kind="permission_error")
        try:
            quotas.acquire(who["key_id"])
        except QuotaExceeded as exc:
            audit(request, who, 429, guard={"prompt": prompt_decision}, **base)
            raise ApiError(429, str(exc), kind="rate_limit_error", headers={"Retry-After": str(exc.retry_after)}) from None
        released = False
        try:
            if settings.redact_prompts and screened != prompt:
                prompt = screened
            ids = encode()
            backend = state["backend"]
            if len(ids) >= backend.max_positions:
                raise ApiError(400, f"prompt is {len(ids)} tokens; this model takes at most {backend.max_positions - 1}")
            max_tokens = min(req.max_tokens or req.max_completion_tokens or 256, settings.max_tokens_limit)
            job = Job(ids, max_tokens, req.temperature, req.top_p, req.seed)
            created, rid = int(time.time()), f"{'chatcmpl' if shape == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
            run = Generation(backend, job, stops, who["level"], settings.request_timeout_s)

            def finish(status: int) -> None:
                nonlocal released
                if released:
                    return
                released = True
                quotas.release(who["key_id"], len(ids) + run.tokens)
                metrics["tokens"].labels("prompt").inc(len(ids))
                metrics["tokens"].labels("completion").inc(run.tokens)
                if run.decision.get("redactions") or run.decision.get("blocked"):
                    metrics["guard"].labels("answer_redacted_or_blocked").inc()
                audit(request, who, status, prompt_tokens=len(ids), completion_tokens=run.tokens,
                      guard={"prompt": prompt_decision, "answer": run.decision}, answer=run.text, **base)

            citations = None
            if not req.stream:
                try:
                    async for _ in run.deltas():
                        pass
                except TimeoutError:
                    finish(504)
                    raise ApiError(504, "generation timed out", kind="timeout_error") from None
                citations = cite(run, passages)
                finish(200)
                usage = {"prompt_tokens": len(ids), "completion_tokens": run.tokens,
                         "total_tokens": len(ids) + run.tokens}
                if shape == "chat":
                    choice = {"index": 0, "message": {"role": "assistant", "content": run.text},
                              "finish_reason": run.finish_reason, "logprobs": None}
                    out = {"id": rid, "object": "chat.completion", "created": created, "model": model_id,
                           "choices": [choice], "usage": usage}
                else:
                    out = {"id": rid, "object": "text_completion", "created": created, "model": model_id,
                           "choices": [{"index": 0, "text": run.text, "finish_reason": run.finish_reason,
                                        "logprobs": None}], "usage": usage}
                if citations is not None:
                    out["citations"] = citations
                return out

            def chunk(delta: str | None, finish_reason: str | None, extra: dict[str, Any] | None = None) -> str:
                if shape == "chat":
                    payload = {"role": "assistant", "content": delta} if delta is not None else {}
                    choice = {"index": 0, "delta": payload, "finish_reason": finish_reason, "logprobs": None}
                    obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_id,
                           "choices": [choice]}
                else:
                    obj = {"id": rid, "object": "text_completion", "created": created, "model": model_id,
                           "choices": [{"index": 0, "text": delta or "", "finish_reason": finish_reason,
                                        "logprobs": None}]}
                obj.update(extra or {})
                return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

            async def events():
                status = 200
                try:
                    async for delta in run.deltas():
                        if delta:
                            yield chunk(delta, None)
                    extra = {}
                    if (citations := cite(run, passages)) is not None:
                        extra["citations"] = citations
                    extra["usage"] = {"prompt_tokens": len(ids), "completion_tokens": run.tokens,
                                      "total_tokens": len(ids) + run.tokens}
                    yield chunk(None, run.finish_reason, extra)
                    yield "data: [DONE]\n\n"
                except TimeoutError:
                    status = 504
                    yield f"data: {json.dumps(error_body(504, 'generation timed out', 'timeout_error'))}\n\n"
                finally:
                    job.cancelled = True
                    finish(status)

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        except BaseException:
            if not released:
                released = True
                quotas.release(who["key_id"], 0)
                audit(request, who, 400, **base)
            raise

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

    def cite(run: "Generation", passages: list[Any]) -> list[dict[str, Any]] | None:
        if not passages:
            return None
        from sovforge.rag import check_citations

        run.text, citations = check_citations(run.text, passages)
        return citations

    @app.post("/v1/retrieve", openapi_extra=_body_doc(RetrieveRequest))
    async def retrieve(request: Request) -> dict[str, Any]:
        who = caller(request)
        req: RetrieveRequest = await body(request, RetrieveRequest)
        passages = await run_in_threadpool(retrieve_passages, req.query, req.k, who["level"])
        audit(request, who, 200, prompt=req.query, prompt_text=req.query,
              guard={"passages": len(passages), "clearance": who["clearance"]})
        return {"object": "list", "data": [_passage(p) for p in passages]}

    # ------------------------------------------------------------------------------------- admin
    @app.get("/admin/keys")
    async def admin_list(request: Request) -> dict[str, Any]:
        caller(request, "admin")
        return {"data": store.list_keys()}

    @app.post("/admin/keys", openapi_extra=_body_doc(KeyRequest))
    async def admin_create(request: Request) -> dict[str, Any]:
        who = caller(request, "admin")
        req: KeyRequest = await body(request, KeyRequest)
        try:
            key_id, key = store.create_key(req.name, req.role, req.clearance)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        audit(request, who, 200, guard={"created_key": key_id, "role": req.role, "clearance": req.clearance})
        return {"key_id": key_id, "key": key, "note": "shown once; store it safely"}

    @app.delete("/admin/keys/{key_id}")
    async def admin_revoke(request: Request, key_id: str) -> dict[str, Any]:
        who = caller(request, "admin")
        if not store.revoke_key(key_id):
            raise ApiError(404, f"no key {key_id!r}", kind="not_found_error")
        audit(request, who, 200, guard={"revoked_key": key_id})
        return {"key_id": key_id, "revoked": True}

    return app


class Generation:
    """One request's tokens → guarded text deltas (stop strings, PII redaction, clearance block, timeout)."""

    def __init__(self, backend: Any, job: Job, stops: list[str], clearance: Level, timeout: float):
        self.backend, self.job, self.stops, self.clearance = backend, job, stops, clearance
        self.deadline = time.monotonic() + timeout
        self.ids: list[int] = []
        self.text, self.sent, self.finish_reason = "", 0, "stop"
        self.decision: dict[str, Any] = {}

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def _guarded(self, final: bool) -> tuple[str, bool]:
        raw = self.backend.decode(self.ids)
        stopped = False
        for stop in self.stops:
            if (at := raw.find(stop)) >= 0:
                raw, stopped = raw[:at], True
        text, self.decision, blocked = screen(raw, self.clearance, redact=True)
        if blocked:
            return WITHHELD, True
        return text, stopped

    async def deltas(self):
        iterator = self.backend.submit(self.job)
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.job.cancelled = True
                raise TimeoutError
            try:
                token = await asyncio.wait_for(run_in_threadpool(next, iterator, _DONE), timeout=remaining)
            except asyncio.TimeoutError:
                self.job.cancelled = True
                raise TimeoutError from None
            if token is _DONE:
                break
            self.ids.append(token)
            text, stopped = self._guarded(final=False)
            if text == WITHHELD or stopped:
                self.job.cancelled = True
                break
            safe = max(self.sent, len(text) - HOLD_BACK)
            if safe > self.sent and text[: self.sent] == self.text[: self.sent]:
                yield text[self.sent: safe]
                self.sent = safe
            self.text = text
        self.text, stopped = self._guarded(final=True)
        if self.text == WITHHELD:
            self.finish_reason = "content_filter"
        elif not stopped and self.tokens >= self.job.max_tokens:
            self.finish_reason = "length"
        if self.text == WITHHELD and self.sent:
            yield "\n" + WITHHELD
        else:
            yield self.text[self.sent:]
        self.sent = len(self.text)


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for routes that parse their body themselves (to answer bad JSON with a clear 400)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:  # OpenAPI tools do not follow pydantic's local "#/$defs/..." refs
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def _passage(p: Any) -> dict[str, Any]:
    fields = ("doc_id", "source", "text", "score", "classification", "chunk_id", "span", "title")
    return {name: getattr(p, name, None) if not isinstance(p, dict) else p.get(name) for name in fields}


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
