"""Security: auth on every route, clearance, revocation, PII redaction in answers, audit tamper detection."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, update

from tests.serve.conftest import auth

ROUTES = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
          ("POST", "/v1/retrieve"), ("GET", "/metrics"), ("GET", "/admin/keys"), ("POST", "/admin/keys"),
          ("DELETE", "/admin/keys/abc")]


@pytest.mark.parametrize("method,route", ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer sf-nope-nope", "Basic abc", "Bearer "])
def test_no_or_bad_key_is_401_everywhere_but_healthz(gateway, method, route, header):
    client, *_ = gateway
    headers = {"Authorization": header} if header else {}
    r = client.request(method, route, headers=headers, json={})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_healthz_and_chat_page_need_no_key(gateway):
    client, *_ = gateway
    assert client.get("/healthz").json()["status"] == "ok"
    assert "sovforge chat" in client.get("/").text


def test_revoked_key_is_401_and_admin_routes(gateway):
    client, keys, _, app = gateway
    assert client.post("/admin/keys", json={"name": "x"}, headers=auth(keys["user"])).status_code == 403
    made = client.post("/admin/keys", json={"name": "temp", "clearance": "대외비"}, headers=auth(keys["admin"])).json()
    assert client.get("/v1/models", headers=auth(made["key"])).status_code == 200
    listed = client.get("/admin/keys", headers=auth(keys["admin"])).text
    assert made["key"] not in listed and "digest" not in listed
    assert client.delete(f"/admin/keys/{made['key_id']}", headers=auth(keys["admin"])).status_code == 200
    assert client.get("/v1/models", headers=auth(made["key"])).status_code == 401


def test_prompt_marking_above_clearance_is_403_and_audited(gateway):
    client, keys, store, app = gateway
    r = client.post("/v1/completions", json={"model": app.state.model_id, "prompt": "SECRET//NOFORN\nplan", "max_tokens": 2},
                    headers=auth(keys["user"]))
    assert r.status_code == 403
    last = list(store.records())[-1]
    assert last["status"] == 403 and last["guard"]["prompt"]["blocked"] is True


def test_model_above_clearance_is_invisible_and_403(secret_model, tmp_path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=secret_model, state_dir=tmp_path, force_unpromoted=True),
                     backend=EchoTestBackend(secret_model))
    low = app.state.store.create_key("low", clearance="CONFIDENTIAL")[1]
    high = app.state.store.create_key("high", clearance="SECRET")[1]
    with TestClient(app) as client:
        assert client.get("/v1/models", headers=auth(low)).json()["data"] == []
        assert client.get("/v1/models", headers=auth(high)).json()["data"][0]["classification"] == "SECRET"
        body = {"model": app.state.model_id, "prompt": "x", "max_tokens": 2}
        assert client.post("/v1/completions", json=body, headers=auth(low)).status_code == 403
        assert client.post("/v1/completions", json=body, headers=auth(high)).status_code == 200


@pytest.fixture()
def echo_gateway(tiny_model, tmp_path):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True, checkpoint_every=3),
                     backend=EchoTestBackend(tiny_model))
    key = app.state.store.create_key("carol")[1]
    with TestClient(app) as client:
        yield client, key, app


PLANTED = "연락처 kim.minsu@army.mil 주민번호 900101-1234568 입니다"


@pytest.mark.parametrize("stream", [False, True])
def test_planted_pii_in_answer_is_redacted(echo_gateway, stream):
    client, key, app = echo_gateway
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": PLANTED}], "max_tokens": 200,
            "stream": stream}
    r = client.post("/v1/chat/completions", json=body, headers=auth(key))
    assert r.status_code == 200
    if stream:
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    else:
        answer = r.json()["choices"][0]["message"]["content"]
    assert "kim.minsu@army.mil" not in answer and "1234568" not in answer
    assert "[EMAIL]" in answer and "[KR_RRN]" in answer
    guard = list(app.state.store.records())[-1]["guard"]["answer"]
    assert guard["redactions"].get("email") == 1
    assert "kim.minsu" not in json.dumps(list(app.state.store.records()), default=str)


def test_prompt_with_marking_above_clearance_is_blocked(echo_gateway):
    client, key, app = echo_gateway
    body = {"model": app.state.model_id, "messages": [{"role": "user", "content": "TOP SECRET\n작전 계획"}]}
    assert client.post("/v1/chat/completions", json=body, headers=auth(key)).status_code == 403


def test_answer_with_marking_above_clearance_is_withheld(tiny_model):
    """The answer guard on its own: a generated banner above the caller's clearance withholds the answer."""
    import asyncio

    from sovforge.classification import Level
    from sovforge.serve.app import WITHHELD, Generation
    from sovforge.serve.backend import EchoTestBackend, Job

    backend = EchoTestBackend(tiny_model)
    ids = backend.encode("SECRET//NOFORN\n작전 계획 요약")

    async def collect(clearance):
        run = Generation(backend, Job(ids, 100), [], clearance, timeout=30)
        return "".join([d async for d in run.deltas()]), run

    text, run = asyncio.run(collect(Level.CONFIDENTIAL))
    assert text == WITHHELD and run.finish_reason == "content_filter" and run.decision["blocked"]
    text, run = asyncio.run(collect(Level.SECRET))
    assert "작전" in text and run.decision["level"] == "SECRET"


def _fill(client, key, app, n: int) -> None:
    for i in range(n):
        assert client.post("/v1/completions", json={"model": app.state.model_id, "prompt": f"p{i}", "max_tokens": 3},
                           headers=auth(key)).status_code == 200


def test_edited_audit_row_is_named(echo_gateway):
    client, key, app = echo_gateway
    _fill(client, key, app, 4)
    store = app.state.store
    assert store.verify() == []
    with store.engine.begin() as conn:
        conn.execute(update(store.audit).where(store.audit.c.seq == 2).values(completion_tokens=999))
    problems = store.verify()
    assert any("record #2" in p and "edited" in p for p in problems)


def test_deleted_last_rows_detected_by_signed_checkpoint(echo_gateway):
    client, key, app = echo_gateway
    _fill(client, key, app, 6)  # checkpoint_every=3 → signed checkpoints at 3 and 6
    store = app.state.store
    with store.engine.begin() as conn:
        conn.execute(delete(store.audit).where(store.audit.c.seq >= 5))
    problems = store.verify()
    assert any("truncated" in p and "#5" in p for p in problems), problems


def test_deleted_middle_row_named(echo_gateway):
    client, key, app = echo_gateway
    _fill(client, key, app, 4)
    store = app.state.store
    with store.engine.begin() as conn:
        conn.execute(delete(store.audit).where(store.audit.c.seq == 2))
    assert any("record #2 missing" in p for p in store.verify())


def test_promotion_is_enforced(tiny_model, tmp_path):
    from sovforge.serve.app import PromotionError, check_promotion

    with pytest.raises(PromotionError, match="no --report"):
        check_promotion("abc", None, False)
    assert check_promotion("abc", None, True).startswith("forced")


def test_every_refusal_leaves_exactly_one_record_with_its_reason(gateway):
    client, keys, store, app = gateway
    cases = [
        ({}, {"model": app.state.model_id, "prompt": "x"}, 401),  # no key
        (auth(keys["user"]), {"model": app.state.model_id, "prompt": 5}, 422),  # wrong type
        (auth(keys["user"]), {"model": "other-model", "prompt": "x"}, 404),  # not served here
        (auth(keys["user"]), {"model": app.state.model_id, "prompt": "word " * 3000, "max_tokens": 2}, 400),  # > ctx
        (auth(keys["user"]), {"model": app.state.model_id, "prompt": "x", "max_tokens": 0}, 400),
    ]
    for headers, body, status in cases:
        before = store.count()
        r = client.post("/v1/completions", json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert store.count() == before + 1, body
        record = list(store.records())[-1]
        assert record["status"] == status and record["route"] == "/v1/completions"
        reason = json.dumps(record["guard"])
        assert "refused" in reason or "prompt" in reason
    assert store.verify() == []
