"""Fixtures for the serve tests: a real tiny-model gateway (transformers backend) with keys of each kind, and a live
uvicorn server on 127.0.0.1 for clients that need a real socket (openai, lm-eval, Chromium)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from sovforge.classification import Level


@pytest.fixture(scope="module")
def gateway(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig

    state = tmp_path_factory.mktemp("serve-state")
    cfg = ServeConfig(model=tiny_model, state_dir=state, force_unpromoted=True, checkpoint_every=5,
                      requests_per_minute=1000, max_body_bytes=200_000, max_concurrent=16)
    app = create_app(cfg)
    store = app.state.store
    keys = {
        "admin": store.create_key("root", "admin", "TOP_SECRET")[1],
        "user": store.create_key("alice", "user", "UNCLASSIFIED")[1],
    }
    with TestClient(app) as client:
        yield client, keys, store, app


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """Run `app` under a real uvicorn on 127.0.0.1 (free port) in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def live_server(tiny_model, tmp_path_factory):
    """(base URL ending in /v1, a user key, the app) of a real-model gateway on a real socket."""
    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path_factory.mktemp("live"), force_unpromoted=True,
                                 requests_per_minute=10_000))
    key = app.state.store.create_key("client")[1]
    with serving(app) as url:
        yield f"{url}/v1", key, app
    # graceful shutdown sealed the audit log with a signed checkpoint covering every request
    assert app.state.store.verify() == []


OPEN_LAW = "제3조(군사기밀의 구분) 군사기밀은 누설될 경우 국가안전보장에 미치는 영향에 따라 구분한다. 보호 기간은 법률로 정한다."
SECRET_ORDER = "The counseling codeword for Operation Nightfall is AZURE HERON. 군사기밀 보호 기간 codeword."


@pytest.fixture(scope="module")
def rag_index(tmp_path_factory) -> Path:
    """A real sovforge.rag index over an UNCLASSIFIED statute passage and a SECRET order."""
    from sovforge.rag import build_index
    from tests.conftest import write_corpus_artifact

    root = tmp_path_factory.mktemp("rag-serve")
    filler = ["정비일지: 차량 K-311 엔진오일 교환 완료. 다음 점검은 500km 주행 후 실시한다.",
              "훈련 공지: 전 부대원은 금요일 09시까지 연병장에 집합하여 체력검정을 실시한다.",
              "The unit conducts weapons qualification training on Tuesday at Range 7.",
              "Leaders develop subordinates through counseling, coaching and mentoring.",
              "제2조(적용 범위) 이 법은 현역 군인과 사관생도에게 적용한다.",
              "출장 여비 정산은 귀임 후 5일 이내에 증빙 서류와 함께 제출한다.",
              "Vehicle maintenance logs are reviewed weekly by the motor sergeant.",
              "당직 근무자는 매 2시간마다 순찰 결과를 일지에 기록한다."]
    # enough documents that BM25 weighs rare words (with two, every word is in half the corpus and scores ~0)
    docs = [("law", OPEN_LAW, "UNCLASSIFIED"), ("opord", SECRET_ORDER, "SECRET")]
    docs += [(f"note{i}", text, "UNCLASSIFIED") for i, text in enumerate(filler)]
    write_corpus_artifact(root / "corpus", [{"id": doc_id, "text": text, "source": f"/src/{doc_id}.md",
                                             "classification": level, "title": doc_id} for doc_id, text, level in docs],
                          stats={"documents": len(docs), "splits": {"train": len(docs), "validation": 0}})
    return build_index(root / "corpus", root / "index")


@pytest.fixture(scope="module")
def secret_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model re-issued as a SECRET artifact (what a model adapted on SECRET data becomes)."""
    from sovforge.artifacts import build_artifact, open_input

    base = open_input(tiny_model)
    out = tmp_path_factory.mktemp("secret") / "secret-model"
    with build_artifact(out, kind="model") as staging:
        for path in tiny_model.iterdir():
            if path.is_file() and path.name != "manifest.json":
                shutil.copy2(path, staging.path / path.name)
        staging.finish(inputs=[base], config={}, classification=Level.SECRET, stats={})
    return out
