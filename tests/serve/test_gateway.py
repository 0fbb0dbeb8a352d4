"""Gateway behaviour on a real tiny transformers model: OpenAI shapes, streaming, batching, audit, quotas, fuzz."""

from __future__ import annotations

import json
import threading

import pytest

from tests.serve.conftest import auth


def test_models_and_chat_completion(gateway):
    client, keys, store, app = gateway
    models = client.get("/v1/models", headers=auth(keys["user"])).json()
    assert models["data"][0]["id"] == app.state.model_id
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "hello 안녕"}],
            "max_tokens": 5, "temperature": 0, "seed": 1}
    first = client.post("/v1/chat/completions", json=body, headers=auth(keys["user"])).json()
    second = client.post("/v1/chat/completions", json=body, headers=auth(keys["user"])).json()
    assert first["object"] == "chat.completion"
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]  # greedy
    assert 1 <= first["usage"]["completion_tokens"] <= 5
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]


def test_streaming_ends_with_done_and_matches_blocking(gateway):
    client, keys, _, app = gateway
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "stream"}], "max_tokens": 6,
            "temperature": 0, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=auth(keys["user"])) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    blocking = client.post("/v1/chat/completions", json={**body, "stream": False}, headers=auth(keys["user"])).json()
    assert streamed == blocking["choices"][0]["message"]["content"]


def test_completions_max_tokens_and_stop(gateway):
    client, keys, _, app = gateway
    out = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "the", "max_tokens": 3,
                                               "temperature": 0}, headers=auth(keys["user"])).json()
    assert out["object"] == "text_completion" and out["usage"]["completion_tokens"] <= 3
    text = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "the", "max_tokens": 12,
                                                "temperature": 0}, headers=auth(keys["user"])).json()["choices"][0]["text"]
    if len(text) > 2:
        stop = text[1:3]
        cut = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "the", "max_tokens": 12,
                                                   "temperature": 0, "stop": [stop]}, headers=auth(keys["user"])).json()
        assert stop not in cut["choices"][0]["text"]


def test_concurrent_requests_are_batched(gateway):
    client, keys, _, app = gateway
    backend = app.state.serving["backend"]
    before = backend.batches_run
    results = []

    def call(i: int) -> None:
        r = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": f"x{i}" * (i + 1),
                                                 "max_tokens": 8, "temperature": 0}, headers=auth(keys["user"]))
        results.append(r.status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert backend.batches_run - before < 6  # at least two requests shared one generate call


def test_a_batch_waits_while_requests_keep_arriving(tiny_model):
    """Arrivals spaced under one `batch_wait` gap share a batch even when they span more than one gap; the wait
    is capped, so a steady trickle still starts batches (see TransformersBackend._collect)."""
    import time

    from sovforge.serve.backend import Job, TransformersBackend

    backend = TransformersBackend(tiny_model, device="cpu", max_batch_size=8, batch_wait_ms=250)
    try:
        ids = backend.encode("batch me")

        def run(count: int, spacing: float) -> tuple[int, list[int]]:
            before, lengths = backend.batches_run, []

            def call() -> None:
                lengths.append(len(list(backend.submit(Job(list(ids), 3, 0.0, ignore_eos=True)))))

            threads = []
            for _ in range(count):
                threads.append(threading.Thread(target=call))
                threads[-1].start()
                time.sleep(spacing)
            for t in threads:
                t.join()
            return backend.batches_run - before, lengths

        batches, lengths = run(3, 0.15)  # arrivals at 0, 150, 300 ms: a fixed 250-ms window would split them
        assert lengths == [3, 3, 3] and batches == 1
        batches, lengths = run(6, 0.2)  # 0..1000 ms: more than the 750-ms cap, so not one batch
        assert lengths == [3] * 6 and batches >= 2
    finally:
        backend.close()


def test_every_request_is_audited_and_chain_verifies(gateway):
    client, keys, store, app = gateway
    before = store.count()
    client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "audit me", "max_tokens": 2},
                headers=auth(keys["user"]))
    assert store.count() == before + 1
    last = list(store.records())[-1]
    assert last["who"] == "alice" and last["route"] == "/v1/completions" and last["prompt_text"] is None
    assert len(last["prompt_sha256"]) == 64 and last["completion_tokens"] >= 1
    assert store.verify() == []


@pytest.mark.parametrize("payload", [
    b"{not json", b"[]", b"\xff\xfe", b'{"model": 5, "messages": "x"}', b'{"model": "m"}',
    json.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}).encode(),
    json.dumps({"model": "\u0000\ud7ff\U0010ffff", "messages": [{"role": "user", "content": "\u202e"}]}).encode(),
])
def test_malformed_requests_get_4xx_with_message(gateway, payload):
    client, keys, _, _ = gateway
    r = client.post("/v1/chat/completions", content=payload, headers={**auth(keys["user"]),
                                                                       "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]


def test_unicode_edge_prompt_is_served(gateway):
    client, keys, _, app = gateway
    weird = "\u0000 \u202e ﷽ 👩‍👩‍👧 \ud7ff 한국어 e\u0301"
    r = client.post("/v1/chat/completions", json={"model": app.state.model_id, "max_tokens": 3,
                                                  "messages": [{"role": "user", "content": weird}]},
                    headers=auth(keys["user"]))
    assert r.status_code == 200


def test_huge_body_is_413(gateway):
    client, keys, _, app = gateway
    r = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "a" * 300_000},
                    headers=auth(keys["user"]))
    assert r.status_code == 413 and "body larger" in r.json()["error"]["message"]


def test_rate_limit_429_with_retry_after(tiny_model, tmp_path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True, requests_per_minute=2),
                     backend=EchoTestBackend(tiny_model))
    key = app.state.store.create_key("bob")[1]
    with TestClient(app) as client:
        body = {"model": app.state.model_id, "prompt": "hi", "max_tokens": 2}
        codes = [client.post("/v1/completions", json=body, headers=auth(key)) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1


def test_metrics_needs_operator(gateway):
    client, keys, _, _ = gateway
    assert client.get("/metrics", headers=auth(keys["user"])).status_code == 403
    text = client.get("/metrics", headers=auth(keys["admin"])).text
    assert "sovforge_requests_total" in text


def test_request_timeout_is_504_and_audited(tiny_model, tmp_path):
    import asyncio

    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend, TransformersBackend
    from sovforge.serve.config import ServeConfig

    class SlowEcho(EchoTestBackend):
        async def stream(self, job):
            for token in self._echo(job):
                await asyncio.sleep(0.05)
                yield token

    text = "The unit conducts weapons qualification training on Tuesday at Range 7. " * 3
    for name, backend in (("slow", SlowEcho(tiny_model)), ("real", TransformersBackend(tiny_model, device="cpu"))):
        timeout = 0.3 if name == "slow" else 0.0005  # the real model: the backend's own timer fires first
        app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path / name, force_unpromoted=True,
                                     request_timeout_s=timeout), backend=backend)
        key = app.state.store.create_key("t")[1]
        with TestClient(app) as client:
            body = {"model": app.state.model_id, "messages": [{"role": "user", "content": text}], "max_tokens": 200,
                    "ignore_eos": True}
            r = client.post("/v1/chat/completions", json=body, headers=auth(key))
            assert r.status_code == 504 and "timed out" in r.json()["error"]["message"], r.text
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth(key))
            assert '"code": 504' in streamed.text and "[DONE]" not in streamed.text
        statuses = [rec["status"] for rec in app.state.store.records()]
        assert statuses == [504, 504] and app.state.store.verify() == []
