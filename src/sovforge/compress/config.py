"""Config of the `compress` stage (issue 5 fills this in)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class CompressConfig(StrictModel):
    """`sovforge compress`: quantised, pruned and distilled variants of a model, each measured."""
