"""Event types and their default implicit-feedback weights."""

from __future__ import annotations

EVENT_TYPES = ("view", "click", "purchase")
DEFAULT_WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 3.0}
