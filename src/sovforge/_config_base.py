"""The base class of every config model: unknown keys are errors, fields are documented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. `extra="forbid"` turns a typo in a recipe into an error naming the key's path."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)
