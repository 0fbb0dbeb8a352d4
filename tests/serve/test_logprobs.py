"""/v1/completions echo + logprobs (OpenAI legacy semantics) against the model's own logits, and lm-eval's
`local-completions` backend computing loglikelihoods through the gateway."""

from __future__ import annotations

import math

import pytest

from tests.serve.conftest import auth

PROMPT = "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다."


@pytest.fixture(scope="module")
def direct(tiny_model):
    """log p(token i | tokens < i) computed straight from the model, no gateway in between."""
    import torch

    from sovforge.model.loading import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_model, device="cpu").eval(), load_tokenizer(tiny_model)

    def logprobs(ids: list[int]) -> torch.Tensor:  # (len(ids), V): row i-1 predicts token i
        with torch.inference_mode():
            return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)

    return tokenizer, logprobs


def test_echo_scores_the_prompt_like_the_model(gateway, direct):
    client, keys, store, app = gateway
    tokenizer, logprobs = direct
    before = store.count()
    r = client.post("/v1/completions", headers=auth(keys["user"]), json={
        "model": app.state.model_id, "prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 3})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    ids = tokenizer(PROMPT)["input_ids"]
    expected = logprobs(ids)
    assert len(lp["tokens"]) == len(ids) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for i in range(1, len(ids)):
        assert math.isclose(lp["token_logprobs"][i], expected[i - 1, ids[i]].item(), abs_tol=1e-4)
        best = expected[i - 1].topk(3).values.tolist()
        assert math.isclose(max(lp["top_logprobs"][i].values()), best[0], abs_tol=1e-4)
        assert 1 <= len(lp["top_logprobs"][i]) <= 4  # the 3 best (names may collide) + the actual token
    # text_offset indexes the returned text, which is the prompt itself
    assert choice["text"] == tokenizer.decode(ids, skip_special_tokens=True)
    for token, offset in zip(lp["tokens"], lp["text_offset"]):
        assert choice["text"][offset: offset + len(token)] == token
    assert choice["finish_reason"] == "length" and r.json()["usage"]["completion_tokens"] == 0
    assert store.count() == before + 1 and list(store.records())[-1]["guard"]["scoring"]["echo"] is True


def test_token_id_batch_with_one_generated_token(gateway, direct):
    """What lm-eval sends: several rows of token ids, max_tokens 1, echo, logprobs 1."""
    client, keys, _, app = gateway
    tokenizer, logprobs = direct
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in (PROMPT, "The unit reports at 0700.")]
    r = client.post("/v1/completions", headers=auth(keys["user"]), json={
        "model": app.state.model_id, "prompt": rows, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    choices = sorted(r.json()["choices"], key=lambda c: c["index"])
    assert len(choices) == 2
    for row, choice in zip(rows, choices):
        token_logprobs = choice["logprobs"]["token_logprobs"]
        assert len(token_logprobs) == len(row) + 1  # the prompt, then the one generated token
        expected = logprobs(row)
        for i in range(1, len(row)):
            assert math.isclose(token_logprobs[i], expected[i - 1, row[i]].item(), abs_tol=1e-4)
        # greedy: the generated token is the argmax after the prompt
        assert math.isclose(token_logprobs[-1], expected[-1].max().item(), abs_tol=1e-4)


def test_logprobs_of_generated_tokens(gateway, direct):
    client, keys, _, app = gateway
    tokenizer, logprobs = direct
    r = client.post("/v1/completions", headers=auth(keys["user"]), json={
        "model": app.state.model_id, "prompt": PROMPT, "max_tokens": 4, "logprobs": 2, "temperature": 0,
        "ignore_eos": True})
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == 4 and lp["text_offset"][0] == 0
    assert "".join(lp["tokens"]) == choice["text"]
    # the same greedy steps straight on the model (EOS masked, as ignore_eos does), scored on raw log-probs
    ids, want = list(tokenizer(PROMPT)["input_ids"]), []
    for _ in range(4):
        step = logprobs(ids)[-1].clone()
        raw = step.clone()
        step[tokenizer.eos_token_id] = -math.inf
        token = int(step.argmax())
        want.append(raw[token].item())
        ids.append(token)
    for got, expected, top in zip(lp["token_logprobs"], want, lp["top_logprobs"]):
        assert math.isclose(got, expected, abs_tol=1e-4)
        assert got in top.values() and len(top) <= 3


def test_scoring_guard_and_errors(gateway):
    client, keys, store, app = gateway
    body = {"model": app.state.model_id, "max_tokens": 0, "echo": True, "logprobs": 1}
    marked = client.post("/v1/completions", headers=auth(keys["user"]), json={**body, "prompt": "SECRET//NOFORN\nplan"})
    assert marked.status_code == 403 and "marking above your clearance" in marked.json()["error"]["message"]
    assert list(store.records())[-1]["status"] == 403
    bad = [({"prompt": "x", "max_tokens": 0}, 400, "only makes sense with echo"),
           ({"prompt": "x", "stream": True, "logprobs": 1}, 400, "stream"),
           ({"prompt": [[1, 2], [10**9]], "echo": True}, 400, "outside the vocabulary"),
           ({"prompt": [], "echo": True}, 400, "1 to 64 prompts"),
           ({"prompt": [[]], "echo": True}, 400, "must not be empty"),
           ({"prompt": [1, "a"]}, 422, "prompt"),
           ({"prompt": "x", "logprobs": 99}, 422, "logprobs")]
    for extra, status, words in bad:
        r = client.post("/v1/completions", headers=auth(keys["user"]),
                        json={"model": app.state.model_id, "max_tokens": 2, **extra})
        assert r.status_code == status and words in r.json()["error"]["message"], (extra, r.text)


def test_lm_eval_local_completions_through_the_gateway(live_server, tiny_model, direct):
    """lm-eval's own API client (the one `evaluate` uses) gets the same loglikelihoods as the model."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    base_url, key, app = live_server
    tokenizer, logprobs = direct
    lm = LocalCompletionsAPI(base_url=f"{base_url}/completions", model=app.state.model_id, tokenizer=str(tiny_model),
                             tokenizer_backend="huggingface", header={"Authorization": f"Bearer {key}"},
                             max_length=256, max_retries=1)
    pairs = [("제1조(목적) 이 법은", " 군인의 인사관리에"), ("The unit conducts", " weapons training")]
    results = lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])
    for (context, continuation), (loglikelihood, _greedy) in zip(pairs, results):
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]  # as lm-eval splits a pair
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
        expected = logprobs(whole)
        want = sum(expected[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))
        assert math.isclose(loglikelihood, want, abs_tol=1e-3), (context, loglikelihood, want)
