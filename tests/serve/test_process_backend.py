"""`--backend transformers-process`: the same batcher in a child process, spoken to over framed JSON on its pipes.

Checked against the in-process backend on the same tiny model: same greedy tokens, same log-probabilities, the same
refusals; through the gateway (streaming, audit); and what happens when the model process dies or never starts."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.serve.conftest import auth

pytestmark = pytest.mark.timeout(300)  # a reader that missed the child's exit would hang: fail instead


@pytest.fixture(scope="module")
def backends(tiny_model: Path):
    from sovforge.serve.backend import TransformersBackend
    from sovforge.serve.worker import ProcessBackend

    child = ProcessBackend(tiny_model, device="cpu", threads=1, batch_wait_ms=2)
    local = TransformersBackend(tiny_model, device="cpu", batch_wait_ms=2)
    yield child, local
    child.close()
    local.close()


def test_frames_round_trip_and_end_cleanly():
    from sovforge.serve.worker import read_frame, write_frame

    wire = io.BytesIO()
    write_frame(wire, {"op": "gen", "id": 1, "prompt": [1, 2], "text": "한국어 \u0000"})
    write_frame(wire, {"op": "cancel", "id": 1})
    wire.seek(0)
    assert read_frame(wire)["text"] == "한국어 \u0000"
    assert read_frame(wire) == {"op": "cancel", "id": 1}
    assert read_frame(wire) is None


def test_same_tokens_and_scores_as_in_process(backends):
    from sovforge.serve.backend import Job

    child, local = backends
    assert child.worker_pid != os.getpid() and child.max_positions == local.max_positions
    ids = child.chat_prompt([{"role": "user", "content": "제1조(목적) 병역 의무"}])
    assert ids == local.chat_prompt([{"role": "user", "content": "제1조(목적) 병역 의무"}])
    for temperature, seed in ((0.0, None), (0.8, 7)):
        ours = list(child.submit(Job(list(ids), 10, temperature, seed=seed)))
        theirs = list(local.submit(Job(list(ids), 10, temperature, seed=seed)))
        assert ours == theirs and 1 <= len(ours) <= 10

    async def scores():
        return await child.score([ids, ids[:5]], 3), await local.score([ids, ids[:5]], 3)

    ours, theirs = asyncio.run(scores())
    for a, b in zip(ours, theirs, strict=True):
        assert a.token_logprobs[0] is None and a.token_logprobs[1:] == pytest.approx(b.token_logprobs[1:], abs=1e-6)
        assert [[t for t, _ in top] for top in a.top[1:]] == [[t for t, _ in top] for top in b.top[1:]]


def test_refusals_and_cancellation(backends):
    from sovforge.serve.backend import Job

    child, _ = backends
    with pytest.raises(ValueError, match="at most"):
        list(child.submit(Job([1] * (child.max_positions + 1), 3, 0.0)))

    async def abandon() -> int:
        job = Job(child.encode("cancel me"), 200, 0.0, ignore_eos=True)
        async for _ in child.stream(job):
            break  # the caller leaves after the first token: the row is cancelled in the child
        for _ in range(100):
            if child.queue_depth() == 0:
                break
            await asyncio.sleep(0.05)
        return child.queue_depth()

    assert asyncio.run(abandon()) == 0
    assert len(list(child.submit(Job(child.encode("still serving"), 4, 0.0, ignore_eos=True)))) == 4


def test_gateway_streams_and_audits_through_the_child(tiny_model: Path, tmp_path: Path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig

    cfg = ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True, backend="transformers-process",
                      device="cpu")
    app = create_app(cfg)
    key = app.state.store.create_key("alice")[1]
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "보고서"}], "max_tokens": 6,
            "temperature": 0, "stream": True}
    with TestClient(app) as client:
        assert app.state.serving["backend"].name == "transformers-process"
        with client.stream("POST", "/v1/chat/completions", json=body, headers=auth(key)) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
        pid = app.state.serving["backend"].worker_pid
    assert app.state.store.verify() == [] and app.state.store.count() >= 1
    with pytest.raises(ProcessLookupError):  # the child was stopped with the gateway
        os.kill(pid, 0)


def test_a_dead_model_process_fails_requests_with_502_not_a_hang(tiny_model: Path, tmp_path: Path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig
    from sovforge.serve.worker import ProcessBackend

    engine = ProcessBackend(tiny_model, device="cpu", threads=1)
    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True), backend=engine)
    key = app.state.store.create_key("alice")[1]
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    with TestClient(app) as client:
        assert client.post("/v1/chat/completions", json=body, headers=auth(key)).status_code == 200
        os.kill(engine.worker_pid, signal.SIGKILL)  # as the OOM killer would
        deadline = time.monotonic() + 10
        while engine.dead is None and time.monotonic() < deadline:
            time.sleep(0.05)
        response = client.post("/v1/chat/completions", json=body, headers=auth(key))
        assert response.status_code == 502
        assert "model process ended (exit code -9)" in response.json()["error"]["message"]
        assert str(engine.log_path) not in response.text  # the log location is for the operator, not the caller
    assert app.state.store.verify() == []  # both answers audited, the chain intact


def test_a_model_that_cannot_load_is_named_at_start(tmp_path: Path, tiny_model: Path):
    import shutil

    from sovforge.serve.backend import BackendError
    from sovforge.serve.worker import ProcessBackend

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    with pytest.raises(BackendError, match="did not start .*exit code 1"):
        ProcessBackend(broken, device="cpu", threads=1)
