"""Keys/audit store on SQLite and on the real PostgreSQL (127.0.0.1:5432), and the `keys`/`audit` verbs."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from sovforge.serve.store import Store, merkle_root

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _exercise(store: Store) -> None:
    key_id, key = store.create_key("dana", "operator", "CUI")
    assert store.authenticate(key)["clearance"] == "RESTRICTED"
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    for i in range(5):
        store.append(who="dana", key_id=key_id, route="/v1/completions", status=200, prompt_sha256=str(i))
    store.checkpoint()
    assert store.verify() == []
    store.revoke_key(key_id)
    assert store.authenticate(key) is None
    with store.engine.begin() as conn:
        conn.execute(update(store.audit).where(store.audit.c.seq == 3).values(who="mallory"))
    assert any("record #3" in p for p in store.verify())


def test_sqlite_store(tmp_path):
    _exercise(Store(state_dir=tmp_path, checkpoint_every=2))


@pytest.mark.skipif(not _pg_reachable(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_postgresql_store(tmp_path):
    store = Store(PG_URL, prefix=f"sft_{uuid.uuid4().hex[:8]}_", state_dir=tmp_path, checkpoint_every=2)
    try:
        _exercise(store)
    finally:
        store.drop_all()


def test_merkle_root_changes_with_any_leaf():
    leaves = [f"{i:064x}" for i in range(5)]
    assert merkle_root(leaves) != merkle_root(leaves[:4]) != merkle_root(leaves[::-1])


def test_keys_and_audit_cli(tmp_path):
    from sovforge.cli import app

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "erin", "--role", "admin", "--db", db])
    assert made.exit_code == 0, made.output
    key_id = json.loads(made.output)["key_id"]
    listed = runner.invoke(app, ["keys", "list", "--db", db]).output
    assert key_id in listed and "sf-" not in listed
    assert runner.invoke(app, ["keys", "create", "x", "--role", "god", "--db", db]).exit_code == 1
    store = Store(db)
    store.append(who="erin", route="/v1/models", status=200)
    store.append(who="erin", route="/v1/models", status=200)
    assert runner.invoke(app, ["audit", "verify", "--db", db]).exit_code == 0
    out = tmp_path / "audit.jsonl"
    assert runner.invoke(app, ["audit", "export", "--out", str(out), "--db", db]).exit_code == 0
    assert len(out.read_text().splitlines()) == 2
    with store.engine.begin() as conn:
        conn.execute(update(store.audit).where(store.audit.c.seq == 1).values(route="/elsewhere"))
    bad = runner.invoke(app, ["audit", "verify", "--db", db])
    assert bad.exit_code == 1 and "record #1" in bad.output
    assert runner.invoke(app, ["keys", "revoke", key_id, "--db", db]).exit_code == 0


def test_serve_refuses_without_report(tiny_model):
    from sovforge.cli import app

    result = CliRunner().invoke(app, ["serve", str(tiny_model)])
    assert result.exit_code == 1 and "--force-unpromoted" in result.output


def test_vllm_backend_clear_error(tiny_model):
    from sovforge.serve.backend import BackendError, make_backend

    with pytest.raises(BackendError, match="vllm"):
        make_backend("vllm", tiny_model)
