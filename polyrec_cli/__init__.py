"""polyrec's application layer: the ``polyrec`` command and everything that runs, prints or plots.

The composition root: it imports the core (``polyrec``), the adapters (``stream``, ``export``) and
``encoders``, and nothing imports it (import-linter checks both; docs/architecture.md).
"""
