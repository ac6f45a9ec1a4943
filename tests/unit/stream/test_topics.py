"""Topic names and the broker's creation responses, without a broker (tests/integration/test_topics.py
creates them on a real one)."""

from __future__ import annotations

from stream.app import Worker
from stream.settings import Settings
from stream.topics import creation_errors, users_changelog_topic


def test_creation_errors_names_refusals_but_not_topics_that_already_exist():
    errors = creation_errors([("a", 0, None), ("b", 36, "Topic with this name already exists."),
                              ("c", 38, "Replication factor: 3 larger than available brokers: 1.")])
    assert errors == ["c: InvalidReplicationFactorError (Replication factor: 3 larger than available brokers: 1.)"]


def test_the_users_changelog_name_is_the_one_faust_gives_the_table():
    settings = Settings(app_id="polyrec-names", items_agent=False)
    assert Worker(settings).app.tables["users"].changelog_topic.get_topic_name() == users_changelog_topic(settings)
