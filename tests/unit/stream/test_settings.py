"""Settings from the environment, and the generated configuration reference."""

from pathlib import Path

import pytest

from stream.settings import Settings, markdown_table

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_defaults_and_overrides_from_the_environment():
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "kafka://a:1, b:2", "POLYREC_TOP_K": "20",
                           "POLYREC_WEIGHT_VIEW": "0.5", "POLYREC_ITEMS_AGENT": "off", "POLYREC_DIM": ""})
    assert s.broker_list == ["a:1", "b:2"] and s.top_k == 20 and s.weights["view"] == 0.5
    assert s.items_agent is False and s.dim == Settings().dim


@pytest.mark.parametrize("raw,value", [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("no", False)])
def test_booleans_parse_words_not_truthiness(raw, value):
    assert Settings.from_env({"POLYREC_ITEMS_AGENT": raw}).items_agent is value


@pytest.mark.parametrize("env", [{"POLYREC_TOP_K": "ten"}, {"POLYREC_ITEMS_AGENT": "maybe"}])
def test_a_bad_value_names_its_variable(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_the_configuration_reference_matches_the_code():
    text = DOC.read_text()
    assert markdown_table() in text, "docs/configuration.md is stale: regenerate it with `polyrec config --markdown`"


@pytest.mark.parametrize("env", [{"POLYREC_PROJECTION_ALPHA": "0"}, {"POLYREC_TOP_K": "0"},
                                 {"POLYREC_ENCODER_PROVIDER": "gpu"}, {"POLYREC_RECS_TTL_S": "0"},
                                 {"POLYREC_STREAM_MAXLEN": "-1"}, {"POLYREC_WEIGHT_CLICK": "nan"},
                                 {"POLYREC_WEIGHT_VIEW": "-1"}, {"POLYREC_WEIGHT_PURCHASE": "inf"},
                                 {"POLYREC_REBALANCE_TIMEOUT_S": "0"}, {"POLYREC_HEARTBEAT_INTERVAL_S": "0"},
                                 {"POLYREC_EVENT_LOOP": "trio"}, {"POLYREC_PROJECTION_MIN_COUNT": "0"},
                                 {"POLYREC_WEB_PORT": "-5"}, {"POLYREC_METRICS_PORT": "70000"},
                                 {"POLYREC_ENCODER_THREADS": "-1"}, {"POLYREC_FETCH_MAX_WAIT_MS": "-1"},
                                 {"POLYREC_SEED": "-1"}, {"POLYREC_STORE": "rocksbd://"},
                                 {"POLYREC_STORE": "memory"}, {"POLYREC_WEIGHT_PURCHASE": "1e30"},
                                 {"POLYREC_EXPLORE_FIT": "1.5"}, {"POLYREC_EXPLORE_FIT": "-0.1"}])
def test_out_of_range_values_name_their_variable(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_a_zero_weight_refit_period_port_or_seed_is_allowed():
    settings = Settings.from_env({"POLYREC_WEIGHT_VIEW": "0", "POLYREC_PROJECTION_REFIT_S": "0",
                                  "POLYREC_WEB_PORT": "0", "POLYREC_METRICS_PORT": "0", "POLYREC_SEED": "0",
                                  "POLYREC_FETCH_MAX_WAIT_MS": "0", "POLYREC_ENCODER_THREADS": "0"})
    assert settings.weights["view"] == 0 and settings.projection_refit_s == 0
    assert settings.web_port == settings.metrics_port == settings.seed == 0


def test_exploration_is_off_at_zero_and_takes_the_last_place_of_the_list():
    assert Settings.from_env({"POLYREC_EXPLORE_FIT": "0", "POLYREC_EXPLORE_REACH": "0"}).explore_config() is None
    config = Settings.from_env({"POLYREC_EXPLORE_FIT": "0.25", "POLYREC_TOP_K": "7"}).explore_config()
    assert config is not None and (config.fit, config.place, config.reach) == (0.25, 7, 30)
    young_only = Settings.from_env({"POLYREC_EXPLORE_FIT": "0", "POLYREC_EXPLORE_REACH": "30"}).explore_config()
    assert young_only is not None and (young_only.fit, young_only.reach) == (0.0, 30)
    assert Settings.from_env({"POLYREC_EXPLORE_SHARE": "0.3"}).explore_config().share == 0.3
    with pytest.raises(ValueError, match="POLYREC_EXPLORE_SHARE"):
        Settings.from_env({"POLYREC_EXPLORE_SHARE": "1.5"})


def test_config_prints_variables_with_passwords_masked(monkeypatch, capsys):
    from polyrec_cli.main import main

    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@redis:6379/2")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "REDIS_URL=redis://:***@redis:6379/2" in out and "s3cret" not in out
    assert "POLYREC_TOP_K=10" in out


def test_a_bad_setting_is_a_one_line_error_not_a_traceback(monkeypatch, capsys):
    from polyrec_cli.main import main

    monkeypatch.setenv("POLYREC_TOP_K", "ten")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polyrec config: ValueError: POLYREC_TOP_K='ten'") and err.count("\n") == 1
