"""Property-based fuzzing of our own OpenAPI document with schemathesis (valid and invalid bodies, every operation,
a fixed number of derandomised examples): never a 5xx, and every 4xx carries a JSON error with a message.

The gateway runs the real tiny model (so echo/logprobs scoring and generation are fuzzed too, capped at 4 tokens) and
a real retrieval index (so /v1/retrieve is exercised, not refused).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (the dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from tests.serve.conftest import auth  # noqa: E402

EXAMPLES = int(__import__("os").environ.get("SOVFORGE_FUZZ_EXAMPLES", "10"))  # per operation and mode


@pytest.fixture(scope="module")
def api_schema(tiny_model, rag_index, tmp_path_factory):
    from sovforge.serve.app import create_app
    from sovforge.serve.backend import TransformersBackend
    from sovforge.serve.config import ServeConfig

    backend = TransformersBackend(tiny_model, device="cpu", batch_wait_ms=0)
    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path_factory.mktemp("fuzz"), force_unpromoted=True,
                                 index=rag_index, requests_per_minute=10**6, tokens_per_day=10**9,
                                 max_tokens_limit=4, max_concurrent=64), backend=backend)
    app.state.fuzz_key = app.state.store.create_key("fuzz", "admin", "TOP_SECRET")[1]
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    backend.close()


@pytest.mark.timeout(300)
def test_fuzzed_requests_never_5xx(api_schema):
    key = api_schema.app.state.fuzz_key
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    seen: dict[int, int] = {}

    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def check(case):
                response = case.call(headers=auth(key))
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, f"{operation.label} ({mode.value}): {response.status_code} " \
                                                   f"{response.text[:500]}"
                if response.status_code >= 400 and "json" in str(response.headers.get("content-type")):
                    assert response.json()["error"]["message"]

            try:
                check()
            except Unsatisfiable:
                if mode is schemathesis.GenerationMode.POSITIVE:
                    raise
                # an operation without parameters or body (GET /healthz) has nothing to make invalid
    print("status codes seen:", dict(sorted(seen.items())))
    assert any(400 <= code < 500 for code in seen) and any(code < 300 for code in seen), seen
    assert api_schema.app.state.store.verify() == []  # every fuzzed request was audited and the chain holds
