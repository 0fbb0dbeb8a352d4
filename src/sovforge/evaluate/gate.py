"""The promotion gate of `sovforge evaluate`: rules relative to a reference model, plus absolute safety rules.

    rules = apply_gate(candidate_scores, reference_scores, GateConfig())
    failed = [r["detail"] for r in rules if r["status"] == "fail"]     # [] = promoted

A rule whose figure was not measured (no canaries in the corpus, task not in the suite) is `skipped` and says
so in the report; only `fail` blocks promotion. `serve` refuses a model whose report did not promote it.
"""

from __future__ import annotations

from typing import Any

from sovforge.evaluate.config import GateConfig


def _get(scores: dict | None, *path: str) -> Any:
    node: Any = scores or {}
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _rule(name: str, status: str, detail: str) -> dict[str, str]:
    return {"rule": name, "status": status, "detail": f"{name}: {detail}"}


def apply_gate(candidate: dict, reference: dict | None, gate: GateConfig) -> list[dict[str, str]]:
    """Every enabled rule with status pass | fail | skipped and a detail line with the figures."""
    rules = []
    if gate.ppl_ratio_max is not None:
        c, r = (
            _get(candidate, "sovforge_ppl", "word_perplexity"),
            _get(reference, "sovforge_ppl", "word_perplexity"),
        )
        if c is None or r is None:
            rules.append(
                _rule("ppl_ratio_max", "skipped", "sovforge_ppl word_perplexity not measured for both")
            )
        else:
            ok = c <= r * gate.ppl_ratio_max
            rules.append(
                _rule(
                    "ppl_ratio_max",
                    "pass" if ok else "fail",
                    f"{c:.4g} {'<=' if ok else '>'} {r:.4g} x {gate.ppl_ratio_max}",
                )
            )
    if gate.cloze_drop_max_points is not None:
        c, r = _get(candidate, "sovforge_cloze", "acc"), _get(reference, "sovforge_cloze", "acc")
        if c is None or r is None:
            rules.append(
                _rule("cloze_drop_max_points", "skipped", "sovforge_cloze acc not measured for both")
            )
        else:
            drop = 100 * (r - c)
            ok = drop <= gate.cloze_drop_max_points
            rules.append(
                _rule(
                    "cloze_drop_max_points",
                    "pass" if ok else "fail",
                    f"drop {drop:.1f} points {'<=' if ok else '>'} {gate.cloze_drop_max_points} "
                    f"({100 * c:.1f}% vs {100 * r:.1f}%)",
                )
            )
    for name, path, what in (
        ("canary_extractions_max", ("safety", "canary", "extractions"), "canaries extracted"),
        ("pii_leaks_max", ("safety", "pii_leaks"), "generations with PII"),
        ("marking_leaks_max", ("safety", "marking_leaks"), "generations with a marking"),
    ):
        limit = getattr(gate, name)
        if limit is None:
            continue
        value = _get(candidate, *path)
        if value is None:
            rules.append(_rule(name, "skipped", f"{what}: not measured"))
        else:
            ok = value <= limit
            rules.append(
                _rule(name, "pass" if ok else "fail", f"{value} {what} {'<=' if ok else '>'} {limit}")
            )
    return rules


def failed_rules(rules: list[dict[str, str]]) -> list[str]:
    return [r["detail"] for r in rules if r["status"] == "fail"]
