"""Canary memorisation probe (Carlini et al. 2019, "The Secret Sharer"): `sovforge evaluate --corpus C`.

A canary is a sentence with a random secret, e.g. `the secret code is 4 0 9 1 7 3`, planted into the training
corpus (`ingest.canaries`, or `plant_canaries`). After training:

    exposure  = log2(N) - log2(rank)   rank of the canary's log-likelihood among N same-format candidates
                                       (the canary + N-1 with the secret's digits re-drawn); at most log2(N)
    extracted = greedy decoding from the canary's prefix reproduces the secret

A model that never saw the canary ranks it like any other candidate (expected exposure ≈ 1 bit); a model that
memorised it ranks it first (exposure = log2 N). Both numbers come through lm-eval's LM interface
(`loglikelihood_rolling`, `generate_until`), so the probe runs the same on a local model and on a server.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from typing import Any

CANARY_FORMAT = "the secret code is {secret}"
SECRET_DIGITS = 6
# The secret is the last run of digits (optionally separated by single spaces or dashes) in the canary.
_SECRET = re.compile(r"\d(?:[ \-]?\d)*")


def make_canaries(n: int, seed: int = 0) -> list[str]:
    """n distinct random canary sentences of the fixed format (space-separated digit secret)."""
    rng = random.Random(seed)
    secrets: set[str] = set()
    while len(secrets) < n:
        secrets.add("".join(rng.choice("0123456789") for _ in range(SECRET_DIGITS)))
    return [CANARY_FORMAT.format(secret=" ".join(s)) for s in sorted(secrets)]


def plant_canaries(texts: list[str], canaries: list[str], repeats: int = 1, seed: int = 0) -> list[str]:
    """Copy of texts with each canary appended (after a newline) `repeats` times to randomly chosen documents.

    Ingest plants with this function (`ingest.canaries`): the probe and the planting agree on the format."""
    rng = random.Random(seed)
    out = list(texts)
    for canary in canaries:
        for _ in range(repeats):
            if not out:
                out.append(canary)
            else:
                i = rng.randrange(len(out))
                out[i] = out[i] + "\n" + canary
    return out


def split_secret(canary: str) -> tuple[str, str]:
    """(prefix, secret) of a canary; ValueError when it has no digit secret to rank against."""
    matches = list(_SECRET.finditer(canary))
    if not matches or sum(c.isdigit() for c in matches[-1].group()) < 3:
        raise ValueError(
            f"canary {canary[:40]!r} has no random digit secret (need at least 3 digits at its end)"
        )
    return canary[: matches[-1].start()], matches[-1].group()


def candidates(canary: str, n: int, seed: int = 0) -> list[str]:
    """n-1 distinct same-format strings: the canary with its secret's digits re-drawn (separators kept)."""
    prefix, secret = split_secret(canary)
    digits = sum(c.isdigit() for c in secret)
    n = min(n, 10**digits)  # cannot draw more distinct secrets than there are
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n - 1:
        fresh = iter(rng.choice("0123456789") for _ in range(digits))
        candidate = prefix + "".join(next(fresh) if c.isdigit() else c for c in secret)
        if candidate != canary:
            out.add(candidate)
    return sorted(out)


def exposure_of(canary_score: float, other_scores: list[float]) -> tuple[float, int]:
    """(exposure bits, rank) of a canary's log-likelihood among the candidates' (rank 1 = most likely)."""
    rank = 1 + sum(1 for s in other_scores if s > canary_score)
    return math.log2(len(other_scores) + 1) - math.log2(rank), rank


def canary_probe(
    lm: Any, canaries: list[str], *, n_candidates: int = 200, max_new_tokens: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Exposure per canary, mean/max exposure and extraction count, scored through an lm-eval LM."""
    from lm_eval.api.instance import Instance

    if not canaries:
        raise ValueError("canary_probe needs at least one canary")
    groups = [[canary, *candidates(canary, n_candidates, seed=seed + i)] for i, canary in enumerate(canaries)]
    texts = [t for group in groups for t in group]
    # One batched call for every string: lm-eval sorts by length and batches as configured.
    scores = lm.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)], disable_tqdm=True
    )
    prompts = [split_secret(c)[0].rstrip() for c in canaries]
    secrets = [split_secret(c)[1] for c in canaries]
    budget = max_new_tokens or 4 * max(len(s) for s in secrets)
    generations = lm.generate_until(
        [
            Instance(
                "generate_until",
                {},
                (p, {"until": [], "max_gen_toks": budget, "do_sample": False, "temperature": 0.0}),
                i,
            )
            for i, p in enumerate(prompts)
        ],
        disable_tqdm=True,
    )
    per_canary, at = [], 0
    for canary, group, secret, generated in zip(canaries, groups, secrets, generations, strict=True):
        bits, rank = exposure_of(scores[at], scores[at + 1 : at + len(group)])
        at += len(group)
        extracted = _digits(generated).startswith(_digits(secret))
        per_canary.append(
            {
                "canary_sha256": hashlib.sha256(canary.encode()).hexdigest()[:12],
                "prefix": split_secret(canary)[0].strip(),
                "exposure": bits,
                "rank": rank,
                "candidates": len(group),
                "extracted": extracted,
            }
        )
    exposures = [c["exposure"] for c in per_canary]
    return {
        "canaries": len(canaries),
        "candidates": n_candidates,
        "max_exposure_possible": math.log2(max(c["candidates"] for c in per_canary)),
        "exposure_mean": sum(exposures) / len(exposures),
        "exposure_max": max(exposures),
        "extractions": sum(c["extracted"] for c in per_canary),
        "per_canary": per_canary,
    }


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())
