"""Settings: TOML, then AISLE_* variables, then options; typos and bad values are errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.config import ConfigError, Settings, load_settings


def test_file_env_and_overrides_in_that_order(tmp_path: Path) -> None:
    f = tmp_path / "serve.toml"
    f.write_text('bundle = "b1"\nport = 9000\napi_keys = ["a"]\n[rules]\nmax_per_brand = 2\n'
                 'pins = [{item_id = "x", position = 1}]\n')
    s = load_settings(f, env={"AISLE_PORT": "9100", "AISLE_RULES__DIVERSITY": "0.5", "AISLE_API_KEYS": "k1, k2"})
    assert s.bundle == Path("b1") and s.port == 9100 and s.api_keys == ("k1", "k2")
    assert s.rules.max_per_brand == 2 and s.rules.diversity == 0.5 and s.rules.pins[0].item_id == "x"
    assert load_settings(f, env={}, port=1234).port == 1234


def test_typos_and_bad_values_are_rejected(tmp_path: Path) -> None:
    f = tmp_path / "serve.toml"
    f.write_text("[rules]\nmax_per_brnad = 2\n")
    with pytest.raises(ConfigError, match="max_per_brnad"):
        load_settings(f, env={})
    with pytest.raises(ConfigError, match="state"):
        load_settings(None, env={"AISLE_STATE": "postgres://x"})
    with pytest.raises(ConfigError, match=r"not-there\.toml"):
        load_settings(tmp_path / "not-there.toml", env={})


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.port = 1  # type: ignore[misc]


def test_an_unknown_aisle_variable_is_an_error_that_lists_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env={"AISLE_RULES__MAX_PER_BRNAD": "3", "AISLE_CACHE": "/tmp/c", "HOME": "/root"})
    message = str(exc.value)
    assert "AISLE_RULES__MAX_PER_BRNAD (rules.max_per_brnad)" in message
    assert "AISLE_RULES__MAX_PER_BRAND" in message and "AISLE_BUNDLE" in message and "AISLE_CACHE" in message
    with pytest.raises(ConfigError, match="AISLE_BUNDEL"):
        load_settings(None, env={"AISLE_BUNDEL": "b"})
    assert load_settings(None, env={"AISLE_CACHE": "/tmp/c", "AISLE_SERVE_SETTINGS": "{}"}) == Settings()


def test_environment_values_are_parsed_by_type(tmp_path: Path) -> None:
    env = {"AISLE_RULES__BOOST_BRANDS": '{"Acme": 2}', "AISLE_ADMIN_KEYS": "a1,a2", "AISLE_GC_FREEZE": "false",
           "AISLE_RULES__PINS": '[{"item_id": "i1", "position": 2}]'}
    s = load_settings(None, env=env)
    assert s.rules.boost_brands == {"Acme": 2.0} and s.admin_keys == ("a1", "a2") and s.gc_freeze is False
    assert s.rules.pins[0].position == 2 and type(s) is Settings
    with pytest.raises(ConfigError, match="JSON"):
        load_settings(None, env={"AISLE_RULES__BOOST_BRANDS": "Acme=2"})


def test_settings_built_in_code_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLE_PORT", "9999")
    assert Settings().port == 8000
    assert load_settings().port == 9999


@pytest.mark.parametrize("value", ["postgresql://aisle@db:5432/shop", "postgres://u:p@h/db?sslmode=require"])
def test_store_is_a_duckdb_path_or_a_postgresql_url(tmp_path: Path, value: str) -> None:
    f = tmp_path / "serve.toml"
    f.write_text(f'store = "{value}"\n')
    for s in (Settings(store=value), load_settings(f, env={}), load_settings(None, env={"AISLE_STORE": value})):
        assert s.store == value and isinstance(s.store, str)  # a URL, never a Path (which would fold its //)
        assert Settings.model_validate_json(s.model_dump_json()).store == value
    for s in (Settings(store="live.duckdb"), Settings(store=Path("live.duckdb")),
              load_settings(None, env={"AISLE_STORE": "live.duckdb"})):
        assert s.store == Path("live.duckdb")
        assert Settings.model_validate_json(s.model_dump_json()).store == Path("live.duckdb")
