"""The official `openai` client against a real uvicorn on 127.0.0.1 (free port, server in a thread)."""

from __future__ import annotations

import pytest


def test_openai_client_unchanged(live_server):
    from openai import OpenAI

    base_url, key, app = live_server
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == [app.state.model_id]
    reply = client.chat.completions.create(model=app.state.model_id, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, temperature=0, seed=3)
    assert reply.usage.completion_tokens <= 4 and reply.choices[0].finish_reason in ("stop", "length")
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=app.state.model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
        stream=True) if c.choices]
    assert "".join(pieces) == reply.choices[0].message.content
    text = client.completions.create(model=app.state.model_id, prompt="the", max_tokens=3, temperature=0)
    assert text.object == "text_completion"


def test_openai_client_sees_clear_errors(live_server):
    import openai

    base_url, key, app = live_server
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="sf-bad-key", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError, match="not served here"):
        openai.OpenAI(base_url=base_url, api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "x"}])
