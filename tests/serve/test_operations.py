"""Operations: graceful shutdown of a real `sovforge serve` process (SIGTERM mid-stream), JSON logs, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.serve.conftest import auth, free_port

PROMPT = "군사기밀 보호 규정에 따라 문서를 관리하는 절차를 설명하라."


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sovforge.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.timeout(240)
def test_sigterm_drains_the_stream_and_seals_the_audit_log(tiny_model, tmp_path):
    import httpx

    # one torch thread: on a small shared CI machine two spinning OpenMP threads per op make a tiny model crawl
    env = {**os.environ, "SOVFORGE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    made = _cli("keys", "create", "ops", "--db", db, env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sovforge.cli", "serve", str(tiny_model), "--force-unpromoted",
                               "--port", str(port), "--db", db, "--drain-timeout", "60"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not start: " + server.stderr.read()[-2000:])
        assert httpx.get(f"{base}/v1/models", headers=auth(key)).status_code == 200
        body = {"model": tiny_model.name, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                "max_tokens": 60, "temperature": 0, "ignore_eos": True}
        after_sigterm: list[str] = []
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=auth(key), timeout=120) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
            server.send_signal(signal.SIGTERM)  # mid-answer: 60 tokens are still being generated
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no longer accepting new connections
                httpx.get(f"{base}/healthz", timeout=2)
            after_sigterm = [line for line in lines if line.startswith("data: ")]
        assert after_sigterm[-1] == "data: [DONE]"  # the in-flight answer was completed, not cut
        final = json.loads(after_sigterm[-2][6:])
        assert final["choices"][0]["finish_reason"] == "length" and final["usage"]["completion_tokens"] == 60
        # uvicorn re-raises the signal once its graceful shutdown is done (so supervisors see a SIGTERM exit)
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
    stderr = server.stderr.read()
    verified = _cli("audit", "verify", "--db", db, env=env)
    assert verified.returncode == 0 and "OK 2 records" in verified.stdout, verified.stdout + verified.stderr
    from sovforge.serve.store import Store

    store = Store(db, state_dir=tmp_path / "home" / "serve")
    with store.engine.connect() as conn:
        last = conn.execute(store.checkpoints.select().order_by(store.checkpoints.c.id.desc())).mappings().first()
    assert last["count"] == store.count() == 2  # the final signed checkpoint covers the drained request

    # structured logs: one JSON object per line; request lines carry route/status/latency/key id, never the key
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert not [line for line in lines if not line.startswith("{")], stderr[-3000:]
    entries = [json.loads(line) for line in lines]
    assert entries and all({"ts", "level", "event"} <= set(e) for e in entries)
    requests = [e for e in entries if e["event"] == "request" and e["route"] == "/v1/chat/completions"]
    assert requests and requests[0]["status"] == 200 and requests[0]["latency_ms"] > 0
    assert requests[0]["key_id"] == key.split("-")[1]
    assert any(e["event"] == "stop" and e["final_checkpoint"] == 2 for e in entries)
    assert key not in stderr and PROMPT not in stderr


def test_metrics_exist_and_move(gateway):
    client, keys, _, app = gateway

    def scrape() -> dict[str, float]:
        text = client.get("/metrics", headers=auth(keys["admin"])).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    before = scrape()
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "metrics"}], "max_tokens": 6,
            "temperature": 0, "ignore_eos": True}
    client.post("/v1/chat/completions", json=body, headers=auth(keys["user"]))
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True},
                       headers=auth(keys["user"])) as r:
        list(r.iter_lines())
    after = scrape()
    ttft = 'sovforge_time_to_first_token_seconds_count{route="chat"}'
    assert after[ttft] >= before.get(ttft, 0) + 2
    assert after["sovforge_decode_tokens_per_second_count"] >= before.get("sovforge_decode_tokens_per_second_count",
                                                                          0) + 2
    assert after['sovforge_tokens_total{kind="completion"}'] >= before.get('sovforge_tokens_total{kind="completion"}',
                                                                           0) + 12
    latency = 'sovforge_request_seconds_count{route="/v1/chat/completions"}'
    assert after[latency] >= before.get(latency, 0) + 2
    assert "sovforge_queue_depth" in after and "sovforge_inflight" in after


def test_queue_depth_gauge_follows_the_backend_queue(tiny_model, tmp_path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import Job, TransformersBackend
    from sovforge.serve.config import ServeConfig

    backend = TransformersBackend(tiny_model, device="cpu")
    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True), backend=backend)
    key = app.state.store.create_key("ops", "operator")[1]
    with TestClient(app) as client:
        def depth() -> float:
            text = client.get("/metrics", headers=auth(key)).text
            return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("sovforge_queue_depth ")))

        assert depth() == 0
        backend.queue.put(None)  # park the worker, then queue work it cannot take
        backend.worker.join(timeout=30)
        for _ in range(3):
            backend.queue.put(Job([1, 2, 3], 2))
        assert depth() == 3


def test_request_log_lines_are_json_without_secrets(gateway, caplog):
    import logging

    from sovforge.serve.ops import JsonLogFormatter

    client, keys, _, app = gateway
    caplog.set_level(logging.INFO, logger="sovforge.serve")
    secret_prompt = "내 비밀번호는 hunter2 이다"
    client.post("/v1/completions", json={"model": app.state.model_id, "prompt": secret_prompt, "max_tokens": 2},
                headers=auth(keys["user"]))
    lines = [JsonLogFormatter().format(record) for record in caplog.records if record.name == "sovforge.serve"]
    entries = [json.loads(line) for line in lines]
    request = [e for e in entries if e["event"] == "request" and e["route"] == "/v1/completions"][-1]
    assert request["status"] == 200 and request["key_id"] and isinstance(request["latency_ms"], float)
    joined = "\n".join(lines)
    assert keys["user"] not in joined and "hunter2" not in joined
