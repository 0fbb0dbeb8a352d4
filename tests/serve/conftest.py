"""Fixtures for the serve tests: a real tiny-model gateway (transformers backend) with keys of each kind."""

from __future__ import annotations

import shutil
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
