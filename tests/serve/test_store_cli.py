"""Keys/audit store on SQLite and on the real PostgreSQL (127.0.0.1:5432), and the `keys`/`audit` verbs."""

from __future__ import annotations

import json
import socket
import threading
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


def _two_writers(url: str | None, prefix: str, state_dir) -> None:
    """Two gateways (two Store objects) appending to one log at once: one linear chain, nothing lost."""
    stores = [Store(url, prefix=prefix, state_dir=state_dir, checkpoint_every=25) for _ in range(2)]

    def write(store: Store, name: str) -> None:
        for i in range(30):
            if i % 3:
                store.append(who=name, route="/v1/completions", status=200, prompt_sha256=f"{name}{i}")
            else:
                store.append_many([{"who": name, "route": "/v1/models", "status": 200} for _ in range(2)])

    threads = [threading.Thread(target=write, args=(store, f"w{n}")) for n, store in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = list(stores[0].records())
    assert [r["seq"] for r in records] == list(range(1, 81))
    assert stores[1].verify() == [] and stores[0].checkpoint() is not None and stores[0].verify() == []


def test_sqlite_store(tmp_path):
    _exercise(Store(state_dir=tmp_path, checkpoint_every=2))
    _two_writers(f"sqlite:///{tmp_path / 'race.db'}", "sf_", tmp_path)


@pytest.mark.skipif(not _pg_reachable(), reason="no PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth)")
def test_postgresql_store(tmp_path):
    """The real PostgreSQL, under a table prefix of this test alone, dropped afterwards."""
    from sqlalchemy import inspect

    prefix = f"sft_{uuid.uuid4().hex[:8]}_"
    store = Store(PG_URL, prefix=prefix, state_dir=tmp_path, checkpoint_every=2)
    try:
        _exercise(store)
        race = f"{prefix}race_"
        try:
            _two_writers(PG_URL, race, tmp_path)
        finally:
            Store(PG_URL, prefix=race, state_dir=tmp_path).drop_all()
    finally:
        store.drop_all()
    probe = Store(PG_URL, prefix=f"sft_probe_{uuid.uuid4().hex[:6]}_", state_dir=tmp_path)
    probe.drop_all()
    assert not [t for t in inspect(probe.engine).get_table_names() if t.startswith(prefix)]


def test_merkle_root_changes_with_any_leaf():
    leaves = [f"{i:064x}" for i in range(5)]
    assert merkle_root(leaves) != merkle_root(leaves[:4]) != merkle_root(leaves[::-1])


def test_keys_and_audit_cli(tmp_path):
    from sovforge.cli import app

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--name", "erin", "--role", "admin", "--db", db])  # DESIGN §3 form
    assert runner.invoke(app, ["keys", "create", "--db", db]).exit_code == 1
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


def test_retention_purge_keeps_the_chain_verifiable(tmp_path):
    from datetime import datetime, timedelta, timezone

    from typer.testing import CliRunner

    from sovforge.cli import app

    db = f"sqlite:///{tmp_path / 'retention.db'}"
    store = Store(db, state_dir=tmp_path, checkpoint_every=1000)
    old = (datetime.now(timezone.utc) - timedelta(days=800)).isoformat(timespec="microseconds")
    for i in range(4):
        store.append(ts=old, who="old", route="/v1/completions", status=200, prompt_sha256=f"{i:064x}")
    store.append(who="new", route="/v1/completions", status=200)
    assert store.purge_older_than(730) == 0  # nothing is covered by a signed checkpoint yet
    result = CliRunner().invoke(app, ["audit", "purge", "--days", "730", "--db", db])
    assert result.exit_code == 0 and "purged 4 records" in result.output, result.output
    rows = list(store.records())
    assert [r["who"] for r in rows] == [None] * 4 + ["new"] and all(r["hash"] for r in rows)
    assert store.verify() == []  # content gone, chain + Merkle checkpoint + signed anchor intact
    with store.engine.begin() as conn:  # emptying a record the purge did not cover is tampering
        conn.execute(update(store.audit).where(store.audit.c.seq == 5).values(
            **{name: None for name in ("ts", "who", "route", "status", "key_id", "source_ip", "model", "guard",
                                       "prompt_tokens", "completion_tokens", "prompt_sha256", "answer_sha256",
                                       "prompt_text", "answer_text")}))
    assert any("#5: content removed without a signed purge" in p for p in store.verify())
    with store.engine.begin() as conn:
        conn.execute(update(store.purges).values(upto=5))  # moving the anchor breaks its signature
    assert any("purge anchor" in p and "bad signature" in p for p in store.verify())
