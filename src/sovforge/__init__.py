"""sovforge: sovereign foundation LLM → defence-specialised, lightweight, safely served models (air-gapped)."""

__version__ = "0.1.0"
