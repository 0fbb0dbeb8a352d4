"""Config of the `evaluate` stage and its promotion gate (issue 6 fills this in)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class EvaluateConfig(StrictModel):
    """`sovforge evaluate`: domain, safety and speed scores in one report."""


class GateConfig(StrictModel):
    """Rules a candidate must pass, relative to a reference model, to be promoted."""
