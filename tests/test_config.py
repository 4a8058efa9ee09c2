import pytest

from gr2.config import ConfigError, load_config


def test_yaml_then_overrides_then_lake(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lake: /from/yaml\netl:\n  k: 20\n  synthetic:\n    end_date: 2025-02-01\n")
    cfg = load_config(f, ["etl.k=5", "etl.split.protocol=time", "spark.conf={spark.x: '1'}"], lake="/from/flag")
    assert cfg.etl.k == 5 and cfg.etl.split.protocol == "time" and cfg.lake == "/from/flag"
    assert cfg.etl.synthetic.end_date == "2025-02-01" and cfg.spark.conf == {"spark.x": "1"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("etl.kk=3", "etl.kk"),
        ("etl.k=1", "etl.k"),
        ("etl.split.protocol=random", "etl.split.protocol"),
        ("etl.split.valid_quantile=0.95", "valid_quantile"),
        ("etl.k", "key=value"),
        ("train.freeze_layers=4", "sid_format=text"),  # new SID tokens must train their embeddings
    ],
)
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_dapo_overlong_window_must_fit_the_answer_cap():
    with pytest.raises(ConfigError, match="overlong_cache"):
        load_config(overrides=["train.dapo.max_new_tokens=24", "train.dapo.overlong_cache=32"])


@pytest.mark.parametrize("columns, width", [(None, 160), ("100", 100)])
def test_console_off_a_terminal_is_wide_unless_columns_is_set(monkeypatch, columns, width):
    # tables in nightly/CI logs must not be cut at rich's 80-column default
    import io
    import sys

    from gr2.platform.progress import _console

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, also under `pytest -s`
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _console().width == width


@pytest.mark.parametrize("name", ["RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "openai_api_key", "_API_KEY"])
def test_the_teacher_key_variable_must_be_an_api_key_not_any_secret_of_the_environment(name):
    with pytest.raises(ConfigError, match="traces.endpoint.api_key_env"):
        load_config(overrides=[f"traces.endpoint.api_key_env={name}"])
    assert load_config(overrides=["traces.endpoint.api_key_env=OPENAI_API_KEY"]).traces.endpoint.api_key_env == "OPENAI_API_KEY"
