"""The vLLM backend without a GPU: the refusals, the command line, the subprocess life cycle, and the HTTP client
against a stand-in server that answers in vLLM's response shapes (vLLM itself is untested here: no CUDA)."""

from __future__ import annotations

import json
import sys

import pytest
from fastapi import Request  # module level: the stand-in's route annotation must resolve

from tests.serve.conftest import auth, serving


def test_refuses_clearly_without_vllm_or_cuda(tiny_model, monkeypatch):
    import importlib.util

    from sovforge.serve.backend import BackendError, make_backend

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(BackendError, match="vllm is not installed"):
            make_backend("vllm", tiny_model)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        make_backend("vllm", tiny_model)


def test_cli_serve_vllm_fails_with_one_line(tiny_model):
    from typer.testing import CliRunner

    from sovforge.cli import app

    result = CliRunner().invoke(app, ["serve", str(tiny_model), "--backend", "vllm", "--force-unpromoted"])
    assert result.exit_code == 1 and "vllm" in result.output and "Traceback" not in result.output


def test_command_line_is_loopback_and_local(tiny_model):
    from sovforge.serve.backend import BackendError
    from sovforge.serve.vllm import vllm_command

    command = vllm_command(tiny_model, 12345, max_model_len=256)
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "12345"
    assert str(tiny_model) in command and "serve" in command and "--return-tokens-as-token-ids" in command
    assert "--trust-remote-code" not in command and "--api-key" not in command  # the token travels in the env
    assert command[command.index("--max-model-len") + 1] == "256"
    for bad in (("--host", "0.0.0.0"), ("--trust-remote-code",)):
        with pytest.raises(BackendError, match="not allowed"):
            vllm_command(tiny_model, 1, extra_args=bad)


@pytest.fixture(scope="module")
def stand_in():
    """A loopback server speaking the parts of vLLM's OpenAI API the backend uses, requiring a bearer token."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    seen: list[dict] = []

    @app.get("/health")
    async def health():
        return {}

    @app.post("/v1/completions")
    async def completions(request: Request):
        if request.headers.get("authorization") != "Bearer stand-in-token":
            return JSONResponse({"error": "unauthorised"}, 401)
        body = await request.json()
        seen.append(body)
        if body.get("stream"):
            prompt = body["prompt"]
            tokens = (prompt[1:] + prompt)[: body["max_tokens"]]  # echo-like, deterministic

            async def events():
                for i, token in enumerate(tokens):
                    if i % 2:  # both shapes vLLM versions use: token_ids, or "token_id:N" logprob tokens
                        choice = {"index": 0, "text": "?", "token_ids": [token]}
                    else:
                        choice = {"index": 0, "text": "?", "logprobs": {"tokens": [f"token_id:{token}"]}}
                    yield f"data: {json.dumps({'choices': [choice]})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        choices = []
        for index, row in enumerate(body["prompt"]):
            tops = [None] + [{f"token_id:{t}": -0.5, "token_id:3": -1.5} for t in row[1:]] + [{"token_id:3": -0.1}]
            choices.append({"index": index, "text": "", "logprobs": {
                "tokens": [f"token_id:{t}" for t in row] + ["token_id:3"],
                "token_logprobs": [None] + [-0.5] * (len(row) - 1) + [-0.1], "top_logprobs": tops}})
        return {"choices": choices}

    with serving(app) as url:
        yield url, seen


def test_gateway_over_the_vllm_client(tiny_model, tmp_path, stand_in):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig
    from sovforge.serve.vllm import VllmBackend

    url, seen = stand_in
    backend = VllmBackend(tiny_model, base_url=url, api_key="stand-in-token")
    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True), backend=backend)
    key = app.state.store.create_key("v")[1]
    text = "The unit conducts weapons qualification training on Tuesday at Range 7 and reports at noon."
    with TestClient(app) as client:
        r = client.post("/v1/completions", headers=auth(key), json={"model": app.state.model_id, "prompt": text,
                                                                    "max_tokens": 200, "stream": True})
        streamed = "".join(json.loads(line[6:])["choices"][0]["text"] for line in r.text.splitlines()
                           if line.startswith("data: {"))
        ids = backend.encode(text)
        assert streamed == backend.decode(ids[1:] + ids)[: len(streamed)] and len(streamed) > len(text) // 2
        assert seen[-1]["prompt"] == ids and seen[-1]["stream"] is True  # token ids went to vllm, not text
        scored = client.post("/v1/completions", headers=auth(key), json={
            "model": app.state.model_id, "prompt": [ids[:5]], "max_tokens": 0, "echo": True, "logprobs": 2}).json()
        lp = scored["choices"][0]["logprobs"]
        assert lp["token_logprobs"] == [None, -0.5, -0.5, -0.5, -0.5] and lp["top_logprobs"][0] is None
        assert seen[-1]["echo"] is True and seen[-1]["max_tokens"] == 1
    assert app.state.store.verify() == [] and app.state.store.count() == 2


def test_subprocess_start_failures_are_clear(tiny_model, stand_in):
    from sovforge.serve.backend import BackendError
    from sovforge.serve.vllm import VllmBackend

    backend = VllmBackend(tiny_model, base_url=stand_in[0], api_key="stand-in-token")
    with pytest.raises(BackendError, match="exited with code 3"):
        backend._start([sys.executable, "-c", "print('CUDA out of memory'); raise SystemExit(3)"], "k", 30,
                       "http://127.0.0.1:9")
    with pytest.raises(BackendError, match="did not become healthy within 2 s"):
        backend._start([sys.executable, "-c", "import time; time.sleep(120)"], "k", 2, "http://127.0.0.1:9")
    assert backend.process is None  # the hung server was killed, not left behind
