"""/v1/retrieve and "retrieval": true against the real sovforge.rag index, clearance-filtered."""

from __future__ import annotations

import pytest

from tests.serve.conftest import auth


@pytest.fixture(scope="module")
def rag_gateway(tiny_model, rag_index, tmp_path_factory):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path_factory.mktemp("rag-state"),
                                 force_unpromoted=True, index=rag_index), backend=EchoTestBackend(tiny_model))
    low = app.state.store.create_key("low")[1]
    high = app.state.store.create_key("high", clearance="SECRET")[1]
    with TestClient(app) as client:
        yield client, app, low, high


def test_retrieve_filters_by_clearance(rag_gateway):
    client, app, low, high = rag_gateway
    low_hits = client.post("/v1/retrieve", json={"query": "군사기밀 보호 기간", "k": 5}, headers=auth(low)).json()["results"]
    high_hits = client.post("/v1/retrieve", json={"query": "군사기밀 보호 기간", "k": 5},
                            headers=auth(high)).json()["results"]
    assert {"doc_id", "source", "text", "score", "classification"} <= set(low_hits[0])
    assert low_hits and all(p["classification"] == "UNCLASSIFIED" for p in low_hits)
    assert any(p["classification"] == "SECRET" for p in high_hits)
    assert client.post("/v1/retrieve", json={"query": ""}, headers=auth(low)).status_code == 400


def test_chat_with_retrieval_returns_citations(rag_gateway):
    client, app, low, high = rag_gateway
    backend = app.state.serving["backend"]
    # the echo backend repeats the question, so "[1]" in it plays a model citing passage 1
    body = {"model": app.state.model_id, "retrieval": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": "군사기밀 누설 국가안전보장 구분 codeword Nightfall? [1] [9]"}]}
    r = client.post("/v1/chat/completions", headers=auth(low), json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [c["n"] for c in out["citations"]] == [1] and out["citations"][0]["classification"] == "UNCLASSIFIED"
    assert "[9]" not in out["choices"][0]["message"]["content"]  # a marker naming no given passage is dropped
    # every passage the model was given is listed, numbered as it saw them, cited or not
    assert [s["n"] for s in out["sources"]] == list(range(1, len(out["sources"]) + 1)) and len(out["sources"]) >= 1
    assert out["sources"][0]["chunk_id"] == out["citations"][0]["chunk_id"]
    assert all(s["classification"] == "UNCLASSIFIED" for s in out["sources"])
    assert "AZURE HERON" not in str(backend.last_messages)  # the SECRET passage never reached the model's prompt
    r = client.post("/v1/chat/completions", headers=auth(high), json=body)
    assert "AZURE HERON" in str(backend.last_messages)  # while a SECRET-cleared caller's prompt carries it


def test_nothing_relevant_lists_no_sources_and_asks_for_a_refusal(rag_gateway, monkeypatch):
    import sovforge.rag.grounding as grounding

    client, app, low, high = rag_gateway
    backend = app.state.serving["backend"]
    body = {"model": app.state.model_id, "retrieval": True, "max_tokens": 50,
            "messages": [{"role": "user", "content": "이 법은 누구에게 적용하나요?"}]}
    r = client.post("/v1/chat/completions", headers=auth(low), json=body)
    assert r.json()["sources"] and "(none found)" not in str(backend.last_messages)  # a real hit, given to the model
    # the same hit judged below the index's relevance thresholds: the model gets none, and none is listed
    monkeypatch.setattr(grounding, "relevant", lambda passages, *args, **kwargs: [])
    r = client.post("/v1/chat/completions", headers=auth(low), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["sources"] == [] and "(none found)" in str(backend.last_messages)
