"""Config of the `adapt` stage (issue 4 fills this in)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class AdaptConfig(StrictModel):
    """`sovforge adapt`: continued pre-training / SFT of the base model on the corpus."""
