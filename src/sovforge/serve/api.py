"""Request bodies and error shapes of the `sovforge serve` HTTP API (OpenAI-compatible where OpenAI defines it).

Bodies are parsed by the routes themselves (so that malformed JSON gets a clear 400 rather than a framework error);
`body_doc` puts each model's JSON schema into the OpenAPI document, which is what schemathesis fuzzes.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_PROMPTS = 64  # prompts per /v1/completions call (lm-eval batches several)
MAX_STOP = 4


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.kind = kind


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, n, ...)


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class _Sampling(_Lenient):
    model: str = Field(min_length=1, max_length=400)
    max_tokens: int | None = Field(default=None, ge=0, le=1 << 20)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)
    ignore_eos: bool = False
    """vLLM extension: generate exactly max_tokens tokens, past end-of-sequence (benchmarks, drain tests)."""

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP or any(not s or len(s) > 200 for s in stops):
            raise ApiError(400, f"stop: at most {MAX_STOP} non-empty strings of up to 200 characters")
        return stops


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    retrieval: bool = False
    """sovforge extension: ground the answer in the served index (clearance-filtered) and return citations."""


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    """One prompt, several (a batch), token ids, or several rows of token ids (what lm-eval sends)."""
    echo: bool = False
    """Return the prompt before the completion (with `logprobs`: score the prompt's tokens too)."""
    logprobs: int | None = Field(default=None, ge=0, le=20)
    """Return log-probabilities of the tokens and of the `logprobs` most likely alternatives at each position."""

    def prompts(self) -> list[str | list[int]]:
        """The request's prompts, each a string or a row of token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            rows: list[Any] = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            rows = [list(prompt)]
        else:
            rows = list(prompt)
        if not rows or len(rows) > MAX_PROMPTS:
            raise ApiError(400, f"prompt: give 1 to {MAX_PROMPTS} prompts")
        if any(isinstance(row, list) and not row for row in rows):
            raise ApiError(400, "prompt: a token-id prompt must not be empty")
        return rows


class RetrieveRequest(_Lenient):
    query: str
    k: int = Field(default=5, ge=1, le=50)


class KeyRequest(_Lenient):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["user", "operator", "admin"] = "user"
    clearance: str = Field(default="UNCLASSIFIED", max_length=40)


def body_doc(model: type[BaseModel], served: list[str] | None = None) -> dict[str, Any]:
    """OpenAPI request body for routes that parse their body themselves (to answer bad JSON with a clear 400);
    `served` lists the model names the `model` field accepts."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    if served and "model" in schema.get("properties", {}):
        schema["properties"]["model"]["enum"] = served

    def inline(node: Any) -> Any:  # OpenAPI tools do not follow pydantic's local "#/$defs/..." refs
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def passage_json(p: Any) -> dict[str, Any]:
    fields = ("doc_id", "source", "text", "score", "classification", "chunk_id", "span", "title")
    return {name: getattr(p, name, None) if not isinstance(p, dict) else p.get(name) for name in fields}


def describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
