"""Event types and their default implicit-feedback weights (the one copy: the evaluation replays
with them, and the worker's ``POLYREC_WEIGHT_*`` settings default to them)."""

from __future__ import annotations

EVENT_TYPES = ("view", "click", "purchase")
DEFAULT_WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 3.0}
