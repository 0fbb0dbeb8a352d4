"""Operations of `sovforge serve`: Prometheus metrics, structured JSON logs, and the request-observing ASGI middleware.

Logs are one JSON object per line: `ts`, `level`, `event` and, for requests, `route`, `status`, `latency_ms`,
`key_id`, `client`. Never the key itself (the Authorization header is not read here) and never prompt or answer text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger("sovforge.serve")

# Buckets from a tiny CPU model's milliseconds to a 7B model's tens of seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def make_metrics(queue_depth: Callable[[], float]) -> tuple[Any, dict[str, Any]]:
    """A private registry (one per app, so tests and several apps in one process do not collide) and its metrics."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    metrics = {
        "requests": Counter("sovforge_requests", "Requests by route and status", ["route", "status"], registry=registry),
        "latency": Histogram("sovforge_request_seconds", "Request latency until the last byte", ["route"],
                             buckets=_LATENCY_BUCKETS, registry=registry),
        "ttft": Histogram("sovforge_time_to_first_token_seconds",
                          "Request start to the backend's first generated token (queueing + prefill)", ["route"],
                          buckets=_LATENCY_BUCKETS, registry=registry),
        "decode_rate": Histogram("sovforge_decode_tokens_per_second", "Per-request decoding speed after the first "
                                 "token", buckets=_RATE_BUCKETS, registry=registry),
        "tokens": Counter("sovforge_tokens", "Tokens processed", ["kind"], registry=registry),
        "inflight": Gauge("sovforge_inflight", "Requests being generated", registry=registry),
        "queue": Gauge("sovforge_queue_depth", "Work items waiting for the backend", registry=registry),
        "guard": Counter("sovforge_guard_decisions", "Guard decisions", ["decision"], registry=registry),
        "audit": Counter("sovforge_audit_records", "Audit records committed", registry=registry),
    }
    metrics["queue"].set_function(queue_depth)
    return registry, metrics


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line; `extra={"fields": {...}}` adds fields (never pass key values or prompt text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "event": record.getMessage(), "logger": record.name}
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Every line on stderr a JSON object: sovforge and uvicorn at `level`, everything else (transformers, warnings)
    at WARNING through the same formatter; progress bars off. uvicorn's access log is off (the middleware logs
    requests, without query strings)."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):  # idempotent; other handlers are kept
        handler = _StderrHandler()
        handler.setFormatter(JsonLogFormatter())
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("sovforge", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(level)
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
    except ImportError:
        pass


class ObserveMiddleware:
    """Pure ASGI (no per-chunk task hops for streamed answers, unlike BaseHTTPMiddleware): refuses bodies whose
    Content-Length exceeds the limit, then times the request to its last byte, counts it and logs one JSON line."""

    def __init__(self, app: Any, *, metrics: dict[str, Any], max_body_bytes: int, routes: frozenset[str]):
        self.app, self.metrics, self.max_body_bytes, self.routes = app, metrics, max_body_bytes, routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                await _json_error(observed_send, 413, f"body larger than {self.max_body_bytes} bytes")
            else:
                await self.app(scope, receive, observed_send)
        finally:
            path = scope.get("path", "")
            # a label per known route only: arbitrary paths must not grow the metric's cardinality
            route = path if path in self.routes else "/admin/keys/{key_id}" if path.startswith("/admin/keys/") \
                else "other"
            elapsed = time.perf_counter() - started
            self.metrics["requests"].labels(route, str(status["code"])).inc()
            self.metrics["latency"].labels(route).observe(elapsed)
            state = scope.get("state") or {}
            client = scope.get("client")
            log.info("request", extra={"fields": {
                "route": route, "method": scope.get("method"), "status": status["code"],
                "latency_ms": round(1000 * elapsed, 2), "key_id": state.get("key_id"),
                "client": client[0] if client else None}})


async def _json_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
