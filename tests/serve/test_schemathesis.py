"""Property-based fuzzing of our OpenAPI schema with schemathesis: no 5xx (501 = retrieval not configured)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.serve.conftest import auth  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tiny_model, tmp_path_factory):
    from sovforge.serve.app import create_app
    from sovforge.serve.backend import EchoTestBackend
    from sovforge.serve.config import ServeConfig

    app = create_app(ServeConfig(model=tiny_model, state_dir=tmp_path_factory.mktemp("fuzz"), force_unpromoted=True,
                                 requests_per_minute=10**6), backend=EchoTestBackend(tiny_model))
    app.state.fuzz_key = app.state.store.create_key("fuzz", "admin", "TOP_SECRET")[1]
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_fuzzed_requests_never_5xx(api_schema):
    key = api_schema.app.state.fuzz_key
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            response = case.call(headers=auth(key))
            assert response.status_code < 500 or response.status_code == 501, f"{operation.label}: {response.status_code} {response.text}"
            if response.status_code >= 400 and "json" in str(response.headers.get("content-type")):
                assert response.json()["error"]["message"]

        check()
