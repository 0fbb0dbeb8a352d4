"""/v1/retrieve and "retrieval": true against the real sovforge.rag index, clearance-filtered."""

from __future__ import annotations

import json

import pytest

from sovforge.classification import Level
from tests.serve.conftest import auth

OPEN = "제3조(군사기밀의 구분) 군사기밀은 누설될 경우 국가안전보장에 미치는 영향에 따라 구분한다. 보호 기간은 법률로 정한다."
SECRET = "The counseling codeword for Operation Nightfall is AZURE HERON. 군사기밀 보호 기간 codeword."


@pytest.fixture(scope="module")
def rag_gateway(tiny_model, tmp_path_factory):
    from fastapi.testclient import TestClient

    from sovforge.artifacts import build_artifact
    from sovforge.rag import build_index
    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    root = tmp_path_factory.mktemp("rag-serve")
    docs = [("law", OPEN, "UNCLASSIFIED"), ("opord", SECRET, "SECRET")]
    with build_artifact(root / "corpus", kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        with open(staging.path / "documents" / "part-0.jsonl", "w", encoding="utf-8") as fh:
            for doc_id, text, level in docs:
                fh.write(json.dumps({"id": doc_id, "text": text, "source": f"/src/{doc_id}.md", "sha256": "0" * 64,
                                     "lang": "ko", "classification": level, "redactions": [], "split": "train",
                                     "title": doc_id}, ensure_ascii=False) + "\n")
        staging.finish(inputs=[], config={}, classification=Level.SECRET,
                       stats={"documents": 2, "splits": {"train": 2, "validation": 0}})
    index = build_index(root / "corpus", root / "index")
    app = create_app(ServeConfig(model=tiny_model, state_dir=root / "state", force_unpromoted=True, index=index),
                     backend=EchoTestBackend(tiny_model))
    low = app.state.store.create_key("low")[1]
    high = app.state.store.create_key("high", clearance="SECRET")[1]
    with TestClient(app) as client:
        yield client, app, low, high


def test_retrieve_filters_by_clearance(rag_gateway):
    client, app, low, high = rag_gateway
    low_hits = client.post("/v1/retrieve", json={"query": "군사기밀 보호 기간", "k": 5}, headers=auth(low)).json()["data"]
    high_hits = client.post("/v1/retrieve", json={"query": "군사기밀 보호 기간", "k": 5}, headers=auth(high)).json()["data"]
    assert low_hits and all(p["classification"] == "UNCLASSIFIED" for p in low_hits)
    assert any(p["classification"] == "SECRET" for p in high_hits)
    assert client.post("/v1/retrieve", json={"query": ""}, headers=auth(low)).status_code == 400


def test_chat_with_retrieval_returns_citations(rag_gateway):
    client, app, low, _ = rag_gateway
    r = client.post("/v1/chat/completions", headers=auth(low), json={
        "model": app.state.model_id, "retrieval": True, "max_tokens": 400,
        "messages": [{"role": "user", "content": "군사기밀 보호 기간은?"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["citations"], list)
    assert "AZURE HERON" not in body["choices"][0]["message"]["content"]  # SECRET passage never reached the prompt
