"""Quotas shared through the real Redis on 127.0.0.1:6379 (`--redis`): two gateway instances, one limit."""

from __future__ import annotations

import socket
import uuid

import pytest

from tests.serve.conftest import auth

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379 (apt-get install redis)")


@pytest.fixture()
def prefix():
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    import redis

    name = f"sovforge-test:{uuid.uuid4().hex[:10]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)


def test_two_gateways_share_one_rate_limit(tiny_model, tmp_path, prefix):
    from fastapi.testclient import TestClient

    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig
    from sovforge.serve.store import Store

    store = Store(state_dir=tmp_path)  # one keys/audit database, as two workers behind one load balancer would have
    cfg = ServeConfig(model=tiny_model, state_dir=tmp_path, force_unpromoted=True, requests_per_minute=3,
                      redis=REDIS_URL, redis_prefix=prefix)
    apps = [create_app(cfg, backend=EchoTestBackend(tiny_model), store=store) for _ in range(2)]
    key = store.create_key("shared")[1]
    body = {"model": apps[0].state.model_id, "prompt": "hi", "max_tokens": 2}
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        codes = [client.post("/v1/completions", json=body, headers=auth(key)) for client in
                 (first, second, first, second)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert "3 requests/minute" in codes[3].json()["error"]["message"] and int(codes[3].headers["Retry-After"]) >= 1
    assert store.verify() == [] and store.count() == 4  # the refused request is audited too


def test_concurrency_and_tokens_shared(prefix):
    from sovforge.serve.guard import QuotaExceeded, Quotas

    one = Quotas(100, 50, 1, REDIS_URL, prefix=prefix)
    two = Quotas(100, 50, 1, REDIS_URL, prefix=prefix)
    one.acquire("k1")
    with pytest.raises(QuotaExceeded, match="concurrent"):
        two.acquire("k1")  # the other instance sees the request in flight
    two.acquire("k2")  # other keys are independent
    one.release("k1", 60)  # 60 tokens used: over the 50/day quota
    with pytest.raises(QuotaExceeded, match="tokens/day") as refused:
        two.acquire("k1")
    assert refused.value.retry_after > 0
    two.release("k2", 0)
    two.acquire("k2")  # released concurrency is reusable


def test_unreachable_redis_fails_at_start(tmp_path):
    from sovforge.serve.guard import Quotas

    with pytest.raises(Exception, match="(?i)connect"):
        Quotas(1, 1, 1, "redis://127.0.0.1:1/0")
