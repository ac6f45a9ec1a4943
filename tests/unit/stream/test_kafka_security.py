"""The Kafka security settings: validated, masked, and handed to every Kafka client polyrec makes
(pure: each client's constructor is replaced by one that records its arguments and stops)."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from stream.settings import Settings

SASL = dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="polyrec",
            kafka_sasl_password="pa55-word")


def test_each_protocol_gives_the_client_options_faust_would_give_its_own_clients():
    assert Settings().kafka_options() == {"security_protocol": "PLAINTEXT"}
    assert Settings().kafka_credentials() is None
    options = Settings(**SASL).kafka_options()
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "polyrec",
        "sasl_plain_password": "pa55-word"}
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    plain = Settings(**(SASL | {"kafka_security_protocol": "SASL_PLAINTEXT"})).kafka_options()
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and plain.get("ssl_context") is None
    tls = Settings(kafka_security_protocol="SSL").kafka_options()
    assert tls["security_protocol"] == "SSL" and isinstance(tls["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize("bad, message", [
    ({"kafka_security_protocol": "SASL"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"kafka_sasl_mechanism": "GSSAPI"}, "KAFKA_SASL_MECHANISM must be one of"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "needs KAFKA_SASL_USERNAME and"),
    ({"kafka_ssl_certfile": "client.pem"}, "go together"),
])
def test_an_incomplete_or_unknown_security_setting_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Settings(**bad)


def test_the_password_is_masked_wherever_the_settings_are_printed():
    lines = Settings(**SASL, redis_url="rediss://polyrec:r3dis@redis:6380/0").describe()
    assert "KAFKA_SASL_PASSWORD=***" in lines and "REDIS_URL=rediss://polyrec:***@redis:6380/0" in lines
    assert not any("pa55-word" in line or "r3dis" in line for line in lines)


class Stop(Exception):
    """Raised by a recording constructor: the client is never started."""


def _recording(calls: list):
    def construct(*args, **kwargs):
        calls.append(kwargs)
        raise Stop

    return construct


def test_every_kafka_client_outside_faust_gets_the_security_options(monkeypatch):
    import aiokafka
    import aiokafka.admin

    from polyrec_cli import forget
    from stream import offsets, replica, topics

    settings = Settings(**SASL)
    calls: list[dict] = []
    for module, name in ((replica, "AIOKafkaConsumer"), (offsets, "AIOKafkaConsumer"), (topics, "AIOKafkaAdminClient"),
                         (aiokafka, "AIOKafkaProducer"), (aiokafka.admin, "AIOKafkaAdminClient")):
        monkeypatch.setattr(module, name, _recording(calls))

    async def every_client() -> None:
        made = [
            replica.ItemReplica(settings.broker_list, "items", None, None, options=settings.kafka_options()).run(),
            replica.EventReplica(settings.broker_list, "events", None, None, options=settings.kafka_options()).run(),
            offsets.fetch_end_offsets(settings.broker_list, [aiokafka.TopicPartition("t", 0)],
                                      options=settings.kafka_options()),
            topics.ensure_topics(settings),
            forget.send_request(settings, "u1"),
            forget.wait_applied(settings, 0, 0, timeout=0),
        ]
        for coro in made:
            with pytest.raises(Stop):
                await coro

    asyncio.run(every_client())
    assert len(calls) == 6
    for kwargs in calls:
        assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_plain_password"] == "pa55-word", kwargs


def test_the_workers_faust_app_and_replicas_get_them(monkeypatch, tmp_path):
    from faust.auth import SASLCredentials

    from stream.app import Worker

    worker = Worker(Settings(**SASL, items_agent=False, data_dir=str(tmp_path), web_port=0, metrics_port=0))
    credentials = worker.app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials) and credentials.username == "polyrec"
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    for rep in (worker.replica, worker.event_replica):
        assert rep.options["sasl_plain_password"] == "pa55-word"
